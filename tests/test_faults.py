"""Faults never change what a verdict does: a REJECT's pulse keeps its full width whatever follows."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from conftest import DEMO_MODEL
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.station.config import load
from inspectd.daemon.station.loop import Station
from inspectd.daemon.station.outputs.memory import MemoryOutput

PULSE_MS = 400


@pytest.fixture(scope="module")
def stained(tmp_path_factory) -> Path:
    data = generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=1, n_test_per_size=1)
    return sorted((data / "test" / "stain_large").glob("*.png"))[0]


def pulses(history: list[tuple[float, bool]]) -> list[float]:
    widths, start = [], None
    for at, active in history:
        if active and start is None:
            start = at
        elif not active and start is not None:
            widths.append(at - start)
            start = None
    assert start is None, "the reject line was left active"
    return widths


def station_over(tmp_path: Path, files: dict[str, bytes | Path], extra: str = "", mode: str = "once") -> tuple[Station, Path]:
    folder = tmp_path / "parts"
    folder.mkdir()
    for name, content in files.items():
        if isinstance(content, Path):
            shutil.copy(content, folder / name)
        else:
            (folder / name).write_bytes(content)
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{folder}"\nmode = "{mode}"\n'
                      f'[journal]\nenabled = false\n[archive]\npath = "{tmp_path / "archive"}"\n'
                      f'[gpio]\nchip = "memory"\n[gpio.reject]\nline = "GPIO17"\npulse_ms = {PULSE_MS}\n{extra}')
    return Station(load(config), config_path=config, extra_outputs=[MemoryOutput()]), config


def assert_full_pulse(history) -> None:
    widths = pulses(history)
    assert widths and all(width >= PULSE_MS / 1000 for width in widths), widths


def test_a_corrupt_frame_after_a_reject(stained, tmp_path):
    station, _ = station_over(tmp_path, {"a_stain.png": stained, "b_corrupt.png": b"\x89PNG broken"})
    gpio = station.devices.gpio
    assert station.run() == 0
    assert_full_pulse(gpio.history("GPIO17"))


def test_an_archive_that_cannot_be_written_after_a_reject(stained, tmp_path):
    station, _ = station_over(tmp_path, {"a_stain.png": stained, "b_stain.png": stained})
    gpio = station.devices.gpio
    shutil.rmtree(tmp_path / "archive")
    (tmp_path / "archive").write_text("not a folder any more")  # every archive write fails
    assert station.run() == 0
    assert_full_pulse(gpio.history("GPIO17"))


def test_a_reload_that_reopens_the_lines_after_a_reject(stained, tmp_path):
    station, config = station_over(tmp_path, {"a_stain.png": stained}, extra="[gpio.ready]\nline = \"GPIO27\"\n", mode="loop")
    gpio = station.devices.gpio
    runner = threading.Thread(target=station.run)
    runner.start()
    deadline = time.monotonic() + 30
    while not gpio.level("GPIO17") and time.monotonic() < deadline:
        time.sleep(0.005)
    config.write_text(config.read_text().replace('line = "GPIO27"', 'line = "GPIO22"'))  # [gpio] changed: lines reopened
    station.request_reload()
    time.sleep(0.2)
    station.request_stop()
    runner.join(timeout=30)
    assert_full_pulse(gpio.history("GPIO17"))


def test_a_stop_right_after_a_reject(stained, tmp_path):
    station, _ = station_over(tmp_path, {"a_stain.png": stained})
    gpio = station.devices.gpio
    assert station.run() == 0  # the replay ends at once: the station stops mid-pulse
    assert_full_pulse(gpio.history("GPIO17"))
