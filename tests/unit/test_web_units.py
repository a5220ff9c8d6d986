"""The page's unit and setup mode's, as systemd scores them, and what they let each process touch."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT

SYSTEMD = ROOT / "systemd"


def keys(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (SYSTEMD / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("unit", ["inspectd-web.service", "inspectd-setup.service"])
def test_exposure_at_most_2(unit):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not found (apt-get install systemd)")
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(SYSTEMD / unit)], capture_output=True, text=True)
    found = re.search(rf"Overall exposure level for {unit}: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    print(f"\nsystemd-analyze security --offline=yes systemd/{unit}: exposure {found[1]}")
    assert float(found[1]) <= 2.0, result.stdout


def test_the_page_can_write_nothing_and_reach_only_loopback():
    web = keys("inspectd-web.service")
    assert web["User"] == ["inspectd-web"] and set(web["SupplementaryGroups"][0].split()) == {"systemd-journal", "inspectd"}
    assert web["ProtectSystem"] == ["strict"] and not {"ReadWritePaths", "StateDirectory", "RuntimeDirectory", "LogsDirectory"} & set(web)
    assert web["IPAddressDeny"] == ["any"] and web["IPAddressAllow"] == ["localhost"]
    assert web["ExecStart"] == ["/usr/bin/inspectd web --config /etc/inspectd/web.toml"] and web["RestartPreventExitStatus"] == ["78"]


def test_the_station_shares_its_tap_and_archive_with_its_group_only():
    station, setup = keys("inspectd.service"), keys("inspectd-setup.service")
    for unit in (station, setup):
        assert unit["RuntimeDirectory"] == ["inspectd"] and unit["RuntimeDirectoryMode"] == ["0750"] and unit["UMask"] == ["0027"]
        assert unit["PrivateNetwork"] == ["yes"]
    assert setup["Conflicts"] == ["inspectd.service"] and "gpiochip" not in " ".join(setup["DeviceAllow"])
    assert setup["ExecStart"] == ["/usr/bin/inspectd setup --config /etc/inspectd/inspectd.toml"]
