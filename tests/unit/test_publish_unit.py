"""systemd/inspectd-publish.service: as hardened as the station's unit (systemd-analyze security, at most 2.0), with
the network it needs and nothing else, its own user, the password as a credential."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT

UNIT = ROOT / "systemd" / "inspectd-publish.service"


def test_exposure_at_most_2():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not found (apt-get install systemd)")
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)], capture_output=True, text=True)
    found = re.search(r"Overall exposure level for inspectd-publish.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    print(f"\nsystemd-analyze security --offline=yes systemd/inspectd-publish.service: exposure {found[1]}")
    assert float(found[1]) <= 2.0, result.stdout


def test_its_own_user_the_network_it_needs_and_the_password_as_a_credential():
    text = UNIT.read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert settings["User"] == "inspectd-publish" and settings["SupplementaryGroups"] == "systemd-journal"
    assert settings["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6" and "PrivateNetwork" not in settings
    assert settings["LoadCredential"] == "mqtt-password:/etc/inspectd/mqtt-password"
    assert settings["ExecStart"] == "/usr/bin/inspectd publish --config /etc/inspectd/publish.toml"
    assert settings["StateDirectory"] == "inspectd-publish" and settings["RestartPreventExitStatus"] == "78"
    assert "ProtectSystem=strict" in text and "PrivateDevices=yes" in text and "CapabilityBoundingSet=\n" in text
