"""The nspawn harness: boot real systemd and watch it enforce a Type=notify watchdog."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from inspectd.testing.nspawn import DEFAULT_ROOT, booted_container, unavailable_reason

_reason = unavailable_reason(DEFAULT_ROOT)
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"nspawn container unavailable: {_reason}")

UNIT = "inspectd-wdprobe.service"

# sd_notify over the socket systemd hands the service: READY=1, a few pings, then silence.
PROBE = """\
import os, socket, sys, time

def notify(message: str) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)

notify("READY=1")
for _ in range(3):
    time.sleep(0.5)
    notify("WATCHDOG=1")
print("probe stops pinging the watchdog", flush=True)
time.sleep(3600)
"""

SERVICE = """\
[Unit]
Description=inspectd watchdog probe

[Service]
Type=notify
ExecStart=/usr/bin/python3 /opt/probe/probe.py
WatchdogSec=2
Restart=on-watchdog
RestartSec=1
LimitCORE=0
"""


def test_booted_container_is_running_and_disposable() -> None:
    mounts_before = Path("/proc/self/mounts").read_text()
    with booted_container(DEFAULT_ROOT) as box:
        assert box.run(["systemctl", "is-system-running"], check=False).stdout.strip() in ("running", "degraded")
        assert box.run(["cat", "/run/systemd/container"]).stdout.strip() == "systemd-nspawn"
        box.write_file("/etc/inspectd-scratch", "written in the overlay\n")
        pid = box.nspawn_pid
    assert not Path(f"/proc/{pid}").exists()
    assert Path("/proc/self/mounts").read_text() == mounts_before
    assert not (DEFAULT_ROOT / "etc/inspectd-scratch").exists()


def test_systemd_kills_and_restarts_a_service_that_stops_pinging_the_watchdog() -> None:
    with booted_container(DEFAULT_ROOT) as box:
        box.write_file("/opt/probe/probe.py", PROBE)
        box.write_file(f"/etc/systemd/system/{UNIT}", SERVICE)
        box.run(["systemctl", "daemon-reload"])
        # Returns once the probe sent READY=1 (Type=notify).
        box.run(["systemctl", "start", UNIT])

        restarts = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            restarts = int(box.run(["systemctl", "show", "-p", "NRestarts", "--value", UNIT]).stdout)
            if restarts > 0:
                break
            time.sleep(0.25)
        journal = box.run(["journalctl", "--no-pager", "-u", UNIT]).stdout

    assert restarts > 0, journal
    assert "Watchdog timeout (limit 2s)!" in journal
    assert "Killing process" in journal and "SIGABRT" in journal
    assert "Failed with result 'watchdog'" in journal
    assert "Scheduled restart job" in journal
