"""Signals at any moment, to the daemon as a real process with a real sd_notify socket: every signal systemd or an
operator may send is handled or ignored on purpose, a handler only records the request, and every setting the
configuration allows fits the unit's timeouts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DEMO_MODEL, ROOT
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.testing.notify import NotifySocket


@pytest.fixture(scope="module")
def mugs(tmp_path_factory) -> Path:
    return generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=4, n_test_per_size=1) / "test" / "good"


def config_file(folder: Path, images: Path, extra: str = "") -> Path:
    path = folder / "inspectd.toml"
    path.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{images}"\nmode = "loop"\n'
                    f'[archive]\nenabled = false\n{extra}')
    return path


def start(config: Path, notify: NotifySocket) -> subprocess.Popen:
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000")
    return subprocess.Popen([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def verdicts(stderr: str) -> list[int]:
    return [int(m[1]) for m in re.finditer(r"inspectd: (?:PASS|REJECT) frame (\d+) ", stderr)]


def stop(daemon: subprocess.Popen) -> str:
    daemon.send_signal(signal.SIGTERM)
    return daemon.communicate(timeout=60)[1]


def test_a_burst_of_sighups_is_served_while_the_station_goes_on(mugs, tmp_path):
    """A SIGHUP every 2 ms for 3 s: the handler only records it, the loop goes on judging and feeding the watchdog,
    the burst becomes a reload or a few, and SIGTERM still stops the station with its stop record."""
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = start(config_file(tmp_path, mugs), notify)
    try:
        notify.wait_for("READY=1")
        burst_start = time.monotonic()
        while time.monotonic() - burst_start < 3.0:
            daemon.send_signal(signal.SIGHUP)
            time.sleep(0.002)
        burst_end = time.monotonic()
        notify.wait_for("READY=1", after=burst_end - 0.5, timeout_s=60)  # the last plan applied: systemd hears READY again
        time.sleep(1.0)
        assert daemon.poll() is None
        stderr = stop(daemon)
    finally:
        daemon.kill()
        notify.close()
    assert daemon.returncode == 0, stderr[-2000:]
    pings = [at for at in notify.pings() if burst_start <= at <= burst_end]
    gaps = [b - a for a, b in zip([burst_start, *pings], [*pings, burst_end])]
    assert max(gaps) < 1.0, f"the watchdog went unfed for {max(gaps):.2f} s during the burst"
    reloads = stderr.count("inspectd: reloaded ")
    assert 1 <= reloads <= 30, reloads  # a burst of ~1000 is a few reloads, not a thousand and not none
    frames = verdicts(stderr)
    assert frames == list(range(1, len(frames) + 1)) and len(frames) > 10
    assert "stopped (stopped by SIGTERM)" in stderr.splitlines()[-1]


def test_a_sighup_while_starting_is_a_reload_not_the_end(mugs, tmp_path):
    """Before the loop runs the model is loaded and self-tested: a SIGHUP then (systemd's ExecReload, an operator) waits
    for the station instead of killing it."""
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = start(config_file(tmp_path, mugs), notify)
    try:
        wait_until_caught(daemon.pid, signal.SIGHUP)  # inspectd run's first step; the model has not loaded yet
        assert not notify.messages
        for _ in range(5):
            daemon.send_signal(signal.SIGHUP)
            time.sleep(0.2)
        notify.wait_for("READY=1", timeout_s=120)
        assert daemon.poll() is None
        stderr = stop(daemon)
    finally:
        daemon.kill()
        notify.close()
    assert daemon.returncode == 0, stderr[-2000:]
    assert "stopped (stopped by SIGTERM)" in stderr.splitlines()[-1]


def wait_until_caught(pid: int, number: int, timeout_s: float = 60.0) -> None:
    """Until the process has a handler for signal ``number`` (its SigCgt mask in /proc)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.M)[1], 16)
        if caught >> (number - 1) & 1:
            return
        time.sleep(0.005)
    raise AssertionError(f"signal {number} not caught within {timeout_s} s")


IGNORED_OR_HANDLED = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO, signal.SIGPWR,
                      signal.SIGRTMIN, signal.SIGRTMIN + 5, signal.SIGRTMAX, signal.SIGHUP, signal.SIGWINCH, signal.SIGCHLD, signal.SIGURG,
                      signal.SIGCONT, signal.SIGPIPE]


def test_every_signal_an_operator_may_send_is_handled_or_ignored_on_purpose(mugs, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = start(config_file(tmp_path, mugs), notify)
    try:
        notify.wait_for("READY=1")
        for number in IGNORED_OR_HANDLED:
            daemon.send_signal(number)
            time.sleep(0.1)
            assert daemon.poll() is None, f"signal {number} ended the station"
        time.sleep(1.0)
        assert daemon.poll() is None
        stderr = stop(daemon)
    finally:
        daemon.kill()
        notify.close()
    assert daemon.returncode == 0, stderr[-2000:]
    assert "status (SIGUSR1):" in stderr  # the one that asks for something gets it


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_the_signals_that_stop_it_write_the_stop_record(mugs, tmp_path, stop_signal):
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = start(config_file(tmp_path, mugs), notify)
    try:
        notify.wait_for("READY=1")
        daemon.send_signal(stop_signal)
        stderr = daemon.communicate(timeout=60)[1]
    finally:
        daemon.kill()
        notify.close()
    assert daemon.returncode == 0, stderr[-2000:]
    assert f"stopped (stopped by {signal.Signals(stop_signal).name})" in stderr.splitlines()[-1]


def unit_seconds(key: str) -> float:
    text = (ROOT / "systemd" / "inspectd.service").read_text()
    return float(re.search(rf"^{key}=(\d+)$", text, re.M)[1])


def test_every_allowed_setting_fits_the_units_timeouts():
    """The longest pulse a stop waits for fits the stop timeout after the stop's own budget; the longest camera settle
    (before the first frame, so before READY) fits the start timeout."""
    from inspectd.daemon.station.loop import STOP_BUDGET_S
    from inspectd.daemon.station.outputs.reject import PULSE_MAX_MS
    from inspectd.daemon.station.sources.picamera2 import SETTLE_MAX_MS

    assert STOP_BUDGET_S + PULSE_MAX_MS / 1000 < unit_seconds("TimeoutStopSec")
    assert SETTLE_MAX_MS / 1000 < unit_seconds("TimeoutStartSec") / 2


def test_a_pulse_longer_than_a_stop_can_wait_is_refused_by_check(mugs, tmp_path):
    from conftest import cli

    config = config_file(tmp_path, mugs, '[gpio]\nchip = "memory"\n[gpio.reject]\nline = "GPIO17"\npulse_ms = 20000\n')
    result = cli("check", "--config", config)
    assert result.returncode == 78
    assert f"inspectd: {config}: key gpio.reject.pulse_ms: must be at most 2000" in result.stderr
