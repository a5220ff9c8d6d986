"""The unit's exposure as systemd scores it (systemd-analyze security), printed for CI, at most 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT

UNIT = ROOT / "systemd" / "inspectd.service"


def test_exposure_at_most_2():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not found (apt-get install systemd)")
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)], capture_output=True, text=True)
    found = re.search(r"Overall exposure level for inspectd.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    exposure = float(found[1])
    print(f"\nsystemd-analyze security --offline=yes systemd/inspectd.service: exposure {exposure}")
    assert exposure <= 2.0, result.stdout


def test_model_folder_and_configuration_are_read_only_to_the_service():
    text = UNIT.read_text()
    assert re.search(r"^ReadOnlyPaths=.*/var/lib/inspectd/model", text, re.M) and re.search(r"^ReadOnlyPaths=.*/etc/inspectd", text, re.M)
    assert "ProtectSystem=strict" in text and "DevicePolicy=closed" in text and "PrivateNetwork=yes" in text
