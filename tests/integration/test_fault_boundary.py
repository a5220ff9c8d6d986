"""One fault boundary: whatever raises in capture, decode, inference, the decision, an output, the ready line or a
reload becomes a fault record (INSPECTD_FAULT says where, INSPECTD_ERROR the exception's type) and the loop goes
on; a configuration error found while running ends the run with 78; the loop's own error ends it with 70, after
a fault record and the stop record. Journald takes any file name.

Real parts throughout: the demo model, demo images, directory and memory sources, MemoryGpio, MemoryOutput, a
real private journald for what only journald can refuse.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL
from inspectd.testing.journald import private_journald, unavailable_reason
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.gpio.heartbeat import Heartbeat
from inspectd.daemon.station.config import load
from inspectd.daemon.station.loop import EX_SOFTWARE, Station
from inspectd.daemon.station.outputs.journal import MESSAGE_IDS, JournalConfig, JournalOutput
from inspectd.daemon.station.outputs.memory import MemoryOutput
from inspectd.daemon.station.sources.interface import CroppedSource
from inspectd.daemon.station.sources.memory import MemorySource

FAULT_ID = MESSAGE_IDS["fault"]
VERDICT_ID = MESSAGE_IDS["verdict"]


@pytest.fixture(scope="module")
def mugs(tmp_path_factory) -> Path:
    return generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=2, n_test_per_size=2)


@pytest.fixture(scope="module")
def good(mugs) -> np.ndarray:
    return cv2.imread(str(mugs / "test" / "good" / "000.png"))


@pytest.fixture(scope="module")
def stained(mugs) -> np.ndarray:
    return cv2.imread(str(mugs / "test" / "stain_large" / "000.png"))


def config_file(tmp_path: Path, folder: Path | str = "", extra: str = "", mode: str = "once") -> Path:
    path = tmp_path / "inspectd.toml"
    path.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{folder or tmp_path}"\nmode = "{mode}"\n'
                    f'[journal]\nenabled = false\n[archive]\npath = "{tmp_path / "archive"}"\n{extra}')
    return path


def faults(memory: MemoryOutput, where: str | None = None) -> list:
    return [e for e in memory.events if e.kind == "fault" and (where is None or e.fields.get("fault") == where)]


def run_in_thread(station: Station) -> tuple[threading.Thread, list]:
    """station.run() on a thread; the list gets its exit status, or the exception it raised."""
    result: list = []

    def run() -> None:
        try:
            result.append(station.run())
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


# ---------------------------------------------------------------- capture


def test_an_unexpected_error_opening_the_source_is_a_fault_and_the_source_is_reopened(mugs, tmp_path):
    folder = mugs / "test" / "good"
    opened = []

    def open_source(config):
        opened.append(config)
        if len(opened) == 1:
            raise PermissionError(13, "Permission denied", "/dev/video0")  # what a camera without the video group says
        return config.open()

    memory = MemoryOutput()
    station = Station(load(config_file(tmp_path, folder)), extra_outputs=[memory], open_source=open_source)
    assert station.run() == 0
    (fault,) = faults(memory)
    assert fault.fields["fault"] == "source" and fault.fields["error"] == "PermissionError", fault
    assert "Permission denied" in fault.message and "retrying" in fault.message
    assert any(e.kind == "start" and e.fields.get("recovered") == "source" for e in memory.events)
    assert [v.source for v in memory.verdicts] == sorted(p.name for p in folder.glob("*.png"))


def test_unexpected_errors_reading_frames_lose_one_frame_each_and_three_in_a_row_reopen_the_source(mugs, good, tmp_path):
    """CroppedSource reading a frame that is not an image raises ValueError: a frame lost, not the thread."""
    flat = np.zeros(5, dtype=np.uint8)
    frames = MemorySource([good, flat, good, flat, flat, flat, good])  # one source, kept across reopening

    memory = MemoryOutput()
    station = Station(load(config_file(tmp_path, mugs / "test" / "good")), extra_outputs=[memory],
                      open_source=lambda config: CroppedSource(frames, [0, 0, 100, 100]))
    assert station.run() == 0
    assert len(memory.verdicts) == 3
    lost = faults(memory, "frame")
    assert len(lost) == 3 and all(e.fields["error"] == "ValueError" for e in lost), lost
    (down,) = faults(memory, "source")
    assert down.fields["error"] == "ValueError" and "3 reads in a row" in down.message


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_capture_thread_dying_ends_the_run_with_70_after_a_fault_and_the_stop_record(mugs, tmp_path):
    def open_source(config):
        raise SystemExit("a library called exit() in the capture thread")  # not an Exception: the thread ends

    memory = MemoryOutput()
    station = Station(load(config_file(tmp_path, mugs / "test" / "good")), extra_outputs=[memory], open_source=open_source)
    with pytest.raises(InspectdError) as raised:
        station.run()
    assert raised.value.exit_code == EX_SOFTWARE == 70
    kinds = [e.kind for e in memory.events]
    assert kinds[-2:] == ["fault", "stop"], kinds
    assert memory.events[-2].fields["fault"] == "internal"
    assert station.devices.closed and station.pipeline.closed


# ---------------------------------------------------------------- inference and decision


class ReleasedBuffer(np.ndarray):
    """A camera buffer the driver took back under a slow reader: a frame by every check, its pixels unreadable."""

    def __getitem__(self, key):
        raise BufferError("the camera driver took this buffer back")


def test_an_unexpected_inference_error_is_a_fault_and_the_next_frames_are_judged(mugs, good, stained, tmp_path):
    released = good.copy().view(ReleasedBuffer)  # passes the frame check; reading it fails with an error inspectd does not know
    memory = MemoryOutput()
    station = Station(load(config_file(tmp_path, mugs / "test" / "good", extra="[decision]\nmin_defect_area = 10\n")),
                      extra_outputs=[memory], open_source=lambda config: MemorySource([good, released, stained]))
    assert station.run() == 0
    assert [v.source for v in memory.verdicts] == ["memory#1", "memory#3"]
    assert [v.verdict for v in memory.verdicts] == ["PASS", "REJECT"]
    (fault,) = faults(memory)
    assert fault.fields["fault"] == "inference" and fault.fields["source"] == "memory#2"
    assert fault.fields["error"] not in ("InspectdError", None) and fault.fields["error"] in fault.message


# ---------------------------------------------------------------- outputs


class CsvOutput:
    """An embedder's output: one line per verdict in a file. Its folder can vanish."""

    name = "csv"

    def __init__(self, path: Path) -> None:
        self.path = path

    def verdict(self, verdict) -> None:
        with open(self.path, "a") as handle:
            handle.write(f"{verdict.frame},{verdict.verdict}\n")

    def event(self, kind, message, **fields) -> None:
        pass

    def close(self) -> None:
        pass


def pulses(history: list[tuple[float, bool]]) -> int:
    return sum(1 for (_, before), (_, after) in zip(history, history[1:]) if after and not before)


def test_an_output_that_raises_does_not_keep_the_verdict_from_the_others(mugs, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(mugs / "test" / "stain_large" / "000.png", folder / name)
    csv = CsvOutput(tmp_path / "gone" / "verdicts.csv")  # the folder does not exist: every write fails
    journal_lines = io.StringIO()
    unreachable = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def send(message: str, **fields: str) -> None:  # a journal whose socket is gone
        unreachable.sendto(message.encode(), str(tmp_path / "no-journal.socket"))

    journal = JournalOutput(JournalConfig(), send=send, stream=journal_lines)
    memory = MemoryOutput()
    station = Station(load(config_file(tmp_path, folder, extra='[gpio]\nchip = "memory"\n[gpio.reject]\nline = "GPIO17"\npulse_ms = 1\n')),
                      extra_outputs=[csv, journal, memory])
    gpio = station.devices.gpio
    assert station.run() == 0
    assert [v.source for v in memory.verdicts] == ["a.png", "b.png", "c.png"]  # after both failing outputs
    assert pulses(gpio.history("GPIO17")) >= 1 and gpio.level("GPIO17") is False  # the reject line before them
    failed = faults(memory, "output")
    assert len([e for e in failed if e.message.startswith("csv ")]) == 3
    assert all(e.fields["error"] == "FileNotFoundError" for e in failed)
    assert any(e.message.startswith("journal could not take frame 1's REJECT") for e in failed)
    lines = journal_lines.getvalue().splitlines()
    assert sum(line.startswith("inspectd: REJECT frame ") for line in lines) == 3, lines  # each record still went to stderr
    assert any(line.startswith("inspectd: journal could not take frame 1's REJECT") for line in lines)  # and its fault record
    unreachable.close()


def test_a_journal_line_is_one_line_whatever_the_file_name(mugs, stained, tmp_path):
    name = "part\udcff\n\x1b[31m" + "x" * 5000 + ".png"  # not UTF-8, a newline, a terminal escape, 5000 characters
    memory, journal_lines = MemoryOutput(), io.StringIO()
    journal = JournalOutput(JournalConfig(), stream=journal_lines, to_stderr=True)
    station = Station(load(config_file(tmp_path, mugs / "test" / "good")), extra_outputs=[journal, memory],
                      open_source=lambda config: _named(MemorySource([stained]), name))
    assert station.run() == 0
    (line,) = [line for line in journal_lines.getvalue().splitlines() if line.startswith("inspectd: REJECT")]
    assert "part\\xff\\x0a\\x1b[31m" in line and "chars)" in line and len(line) < 2100
    line.encode("utf-8")  # valid UTF-8


class _named:
    """A source whose frames carry a given name (a camera's name, a file name)."""

    def __init__(self, source, name: str) -> None:
        self.source, self.frame_name, self.name = source, name, "named"

    def read(self, timeout_s):
        frame = self.source.read(timeout_s)
        if frame is not None:
            frame.name = self.frame_name
        return frame

    def close(self) -> None:
        self.source.close()


# ---------------------------------------------------------------- health


def test_a_failing_ready_line_is_one_fault_until_it_works_again(mugs, tmp_path):
    config = load(config_file(tmp_path, mugs / "test" / "good", mode="loop",
                              extra='[gpio]\nchip = "memory"\n[gpio.ready]\nline = "GPIO27"\nperiod_ms = 20\n'))
    memory = MemoryOutput()
    station = Station(config, extra_outputs=[memory])
    gpio = station.devices.gpio
    working = station.health.heartbeat
    dead = gpio.output("GPIO5", consumer="test")
    dead.close()  # a line whose chip went away: every set() raises
    thread, result = run_in_thread(station)
    assert memory.wait_for(lambda m: len(m.verdicts) >= 2)
    station.health.heartbeat = Heartbeat(dead, 20)
    assert memory.wait_for(lambda m: len(faults(m, "health")) == 1)
    seen = len(memory.verdicts)
    assert memory.wait_for(lambda m: len(m.verdicts) >= seen + 3)  # inspecting goes on, no fault per turn
    station.health.heartbeat = working
    assert memory.wait_for(lambda m: any(e.fields.get("recovered") == "health" for e in m.events))
    station.request_stop()
    thread.join(timeout=60)
    assert result == [0]
    assert len(faults(memory, "health")) == 1 and faults(memory, "health")[0].fields["error"] == "RuntimeError"


# ---------------------------------------------------------------- reload


def test_every_broken_configuration_of_the_catalogue_is_refused_by_a_reload(mugs, tmp_path):
    """The catalogue's broken files (tests/integration/test_catalogue.py: `check` and `run` refuse each), each sent to a
    running station by a reload: a reload verifies exactly what a start verifies, so every one is refused with a fault
    record while the station goes on judging with the configuration it had. None is taken, none ends the run (an exit 78
    the unit does not restart would stop the line), never another exception out of the loop."""
    from test_catalogue import CONFIGS, write_config

    images = mugs / "test" / "good"
    base = config_file(tmp_path, images, mode="loop")
    original = base.read_text()
    station = memory = thread = result = None
    outcomes = {"refused": 0, "taken": 0, "ended 78": 0}
    for what, _, broken in CONFIGS:
        if station is None:
            memory = MemoryOutput()
            base.write_text(original)
            station = Station(load(base), config_path=base, extra_outputs=[memory])
            thread, result = run_in_thread(station)
            assert memory.wait_for(lambda m: len(m.verdicts) >= 1)
        broken = json.loads(json.dumps(broken))
        if broken.get("source", {}).get("mode") == "once":
            broken["source"]["mode"] = "loop"  # a replay that ends is not what this test is about
        work = tmp_path / "broken"
        work.mkdir(exist_ok=True)
        base.write_text(write_config(work, broken, images).read_text())
        counted = len(memory.events)
        station.request_reload()
        answered = lambda m: any(e.kind in ("fault", "reload", "stop") for e in m.events[counted:])  # noqa: E731, B023 - used in this turn
        assert memory.wait_for(answered, 120), what
        ended = lambda m: any(e.kind == "stop" for e in m.events[counted:])  # noqa: E731, B023 - used in this turn
        seen = len(memory.verdicts)  # frames captured before the reload were judged before its record
        assert memory.wait_for(lambda m: len(m.verdicts) > seen or ended(m), 120), f"{what}: inspection stopped after the reload"  # noqa: B023
        if ended(memory):
            thread.join(timeout=60)
            assert len(result) == 1 and isinstance(result[0], InspectdError) and result[0].exit_code == 78, (what, result)
            assert [e.fields.get("fault") for e in memory.events if e.kind == "fault"][-1] == "config", what
            outcomes["ended 78"] += 1
            station = None
            continue
        outcome = "refused" if any(e.kind == "fault" and e.fields.get("fault") == "reload" for e in memory.events[counted:]) else "taken"
        assert thread.is_alive(), (what, result)
        outcomes[outcome] += 1
    if station is not None:
        station.request_stop()
        thread.join(timeout=60)
        assert result == [0], result
    print(f"\nreloads of {len(CONFIGS)} broken configurations: {outcomes}")
    assert outcomes == {"refused": len(CONFIGS), "taken": 0, "ended 78": 0}


# ---------------------------------------------------------------- journald


def _journald_reason() -> str | None:
    if reason := unavailable_reason():
        return reason
    if subprocess.run([sys.executable, "-c", "import systemd.journal"], capture_output=True).returncode:
        return "systemd-python not importable"
    return None


@pytest.mark.skipif(_journald_reason() is not None, reason=f"private journald unavailable: {_journald_reason()}")
def test_file_names_journald_would_refuse_are_recorded_escaped(mugs, tmp_path):
    """Names that are not UTF-8, hold a newline or are 250 bytes long, in a real journald, from a real daemon."""
    folder = tmp_path / "parts"
    folder.mkdir()
    stained = mugs / "test" / "stain_large" / "000.png"
    names = [b"a-stain\xff\nsecond line.png", b"b-" + b"\xc3\xa9" * 120 + b".png", b"c-corrupt\xfe.png"]
    for name in names[:2]:
        shutil.copy(stained, os.path.join(os.fsencode(folder), name))
    Path(os.path.join(os.fsencode(folder), names[2]).decode("utf-8", "surrogateescape")).write_bytes(b"\x89PNG broken")
    config = config_file(tmp_path, folder).read_text().replace("[journal]\nenabled = false", "[journal]\nenabled = true")
    (tmp_path / "inspectd.toml").write_text(config)
    with private_journald(tmp_path) as jd:
        proc = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(tmp_path / "inspectd.toml")],
                             unit="inspectd.service", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, stderr = proc.communicate(timeout=300)
        records = jd.read_records(_SYSTEMD_UNIT="inspectd.service")
    assert proc.returncode == 0, stderr
    verdicts = [r for r in records if r.get("MESSAGE_ID") == VERDICT_ID]
    assert [r["INSPECTD_SOURCE"] for r in verdicts] == ["a-stain\\xff\\x0asecond line.png", "b-" + "é" * 120 + ".png"]
    assert all(isinstance(r["MESSAGE"], str) and "\n" not in r["MESSAGE"] for r in records)  # journalctl gave text: valid UTF-8
    (fault,) = [r for r in records if r.get("MESSAGE_ID") == FAULT_ID]
    assert fault["INSPECTD_FAULT"] == "frame" and "c-corrupt\\xfe.png" in fault["MESSAGE"]
    assert records[-1]["MESSAGE"].startswith("stopped (replayed all 3 images"), json.dumps(records[-1])[:300]
