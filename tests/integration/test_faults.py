"""Faults never change what a verdict does: a REJECT's pulse keeps its full width whatever follows."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
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
    shutil.rmtree(tmp_path / "archive", ignore_errors=True)  # made when the station takes it, at start
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


def test_frames_that_keep_getting_no_verdict_stop_the_ready_line_until_one_does(stained, tmp_path):
    """One bad frame among good ones is a fault record; a run of them (a gray camera on a colour model, a writer
    producing corrupt files) is a station judging nothing, and the PLC must see it: the ready line stops."""
    good = stained.parent.parent / "good" / "000.png"
    gray = cv2.cvtColor(cv2.imread(str(good)), cv2.COLOR_BGR2GRAY)
    gray_png = cv2.imencode(".png", gray)[1].tobytes()  # the colour demo model refuses it: no verdict
    files = {f"a{i:02d}.png": good for i in range(8)}
    files.update({f"b{i:02d}.png": gray_png for i in range(12)})
    files.update({f"c{i:02d}.png": good for i in range(8)})
    station, _ = station_over(tmp_path, files, extra='[gpio.ready]\nline = "GPIO27"\nperiod_ms = 40.0\n'
                                                     '[trigger]\nkind = "interval"\ninterval_ms = 60.0\n')
    gpio = station.devices.gpio
    assert station.run() == 0
    memory = station.extra_outputs[0]
    assert [v.source for v in memory.verdicts] == [f"a{i:02d}.png" for i in range(8)] + [f"c{i:02d}.png" for i in range(8)]
    assert len([e for e in memory.events if e.kind == "fault"]) == 12
    edges = [at for at, _ in gpio.history("GPIO27")]
    gaps = np.diff(edges)
    # the ready line toggles every 20 ms while frames are judged; it stands still from the third unjudged
    # frame (of twelve, one every 60 ms) until the next verdict, and goes on after it
    assert gaps.max() >= 8 * 0.060, gaps
    assert len(edges) > 10 and edges[-1] > edges[int(np.argmax(gaps))]
    assert station.tally.judging and station.tally.unjudged_in_a_row == 0


def test_status_says_when_the_station_judges_nothing():
    from inspectd.daemon.station.tally import UNJUDGED_IN_A_ROW, Tally

    tally = Tally()
    for _ in range(UNJUDGED_IN_A_ROW - 1):
        tally.not_judged()
    assert tally.judging and tally.status(1.0).startswith("inspecting")
    tally.not_judged()
    assert not tally.judging and "NOT JUDGING (the last 3 frames got no verdict" in tally.status(1.0)
