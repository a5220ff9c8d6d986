"""Watch mode loses no part: a watched folder of real files, the real station loop (on a thread,
its verdicts and events in a MemoryOutput) or the real daemon process, and things a hostile
user does to the folder: files waiting at start or arriving while the daemon is down, files
written slowly in place, undecodable files, FIFOs, sockets, devices, folders and symlinks named
like images, temporary names, odd names, the folder vanishing, and kill -9 at random moments.

Where a file goes after its verdict depends on whether the loop confirms frames (Frame.done):
with it, every inspected file is in inspected/; without it, all but the last CONFIRM_LAG
handed over are, and those wait in the folder (never lost). ``loop_confirms`` finds out by
asking the real loop.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_cli
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.errors import ConfigError
from inspectd.daemon.station.config import load
from inspectd.daemon.station.loop import Station
from inspectd.daemon.station.outputs.memory import MemoryOutput
from inspectd.daemon.station.sources import DirectoryConfig, Frame, SourceFault
from inspectd.daemon.station.sources.directory import CONFIRM_LAG, FAILED, INSPECTED, SKIPPED, UNREADABLE_AFTER

SETTLE_S = 0.1  # short, so that an undecodable file is given up after 10 x 0.1 s
WAIT_S = 60.0  # how long to wait for something that should happen (a functional timeout, not a measurement)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Real PNGs of the demo scene (good mugs and a stained one)."""
    folder = generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=4, n_test_per_size=1)
    return sorted((folder / "test").glob("*/*.png"))


def watch_config(folder: Path, demo_model: Path, watched: Path, journal: bool = False, **keys: object) -> Path:
    source = {"kind": "directory", "path": str(watched), "mode": "watch", "settle_s": SETTLE_S, "retry_max_s": 1.0, **keys}
    lines = [f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}" for key, value in source.items()]
    path = folder / "watch.toml"
    path.write_text(f'[model]\npath = "{demo_model}"\n[source]\n' + "\n".join(lines) +
                    f"\n[archive]\nenabled = false\n[journal]\nenabled = {str(journal).lower()}\n")
    return path


class Watching:
    """The station on a thread over a watched folder; stopped (SIGTERM's way) when the block ends."""

    def __init__(self, config: Path, *outputs: object) -> None:
        self.memory = MemoryOutput()
        self.station = Station(load(config), extra_outputs=[*outputs, self.memory])  # the memory last: when it has a verdict, all have
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="station")

    def _run(self) -> None:
        try:
            self.station.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self) -> Watching:
        self.thread.start()
        self.wait(lambda m: any(e.kind == "start" for e in m.events), "the start record")
        return self

    def __exit__(self, *exc: object) -> None:
        self.station.request_stop()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()
        if exc[0] is None and self.error is not None:
            raise self.error

    def wait(self, predicate: Callable[[MemoryOutput], bool], what: str) -> None:
        self.memory.wait_for(lambda m: predicate(m) or any(e.kind == "stop" for e in m.events), WAIT_S)
        assert predicate(self.memory), f"{what} never came: error {self.error!r}, verdicts {self.sources()}, faults {self.faults()}"

    def wait_sources(self, *names: str) -> None:
        self.wait(lambda m: set(names) <= {v.source for v in m.verdicts}, f"verdicts for {names}")

    def sources(self) -> list[str]:
        return [v.source for v in self.memory.verdicts]

    def faults(self) -> list[str]:
        return [e.message for e in self.memory.events if e.kind == "fault"]


class PlaceWitness:
    """An output that notes, when each verdict arrives, whether the file is still in the watched folder; slow on
    purpose, so that the capture thread reads as far ahead of the loop as it can."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.in_place = folder, {}

    def verdict(self, verdict) -> None:
        self.in_place[verdict.source] = (self.folder / verdict.source).is_file()
        time.sleep(0.15)

    def event(self, kind, message, **fields) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def loop_confirms(demo_model, images, tmp_path_factory) -> bool:
    """Whether the station loop calls Frame.done once a frame's verdict is with the outputs (the real loop, asked)."""
    folder = tmp_path_factory.mktemp("probe")
    station = Station(load(watch_config(folder, demo_model, folder)))
    called = []
    try:
        station.inspect(Frame(cv2.imread(str(images[0])), "probe.png", time.monotonic(), done=lambda: called.append(True)))
    finally:
        station.close()
    return bool(called)


def drop(folder: Path, name: str | bytes, image: Path, age_s: float = 0.0) -> None:
    """A part arriving the safe way: written under a temporary name, then renamed; ``age_s`` back-dates it."""
    temporary = folder / f".incoming-{random.random()}.tmp"
    shutil.copyfile(image, temporary)
    if age_s:
        stamp = time.time() - age_s
        os.utime(temporary, (stamp, stamp))
    os.rename(temporary, os.path.join(os.fsencode(folder), os.fsencode(name)))


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def check_moved(folder: Path, inspected_in_order: list[str], confirms: bool) -> None:
    """Every inspected file reaches inspected/ (without Frame.done: all but the last CONFIRM_LAG); none is lost."""
    must = inspected_in_order if confirms else inspected_in_order[:-CONFIRM_LAG]
    until(lambda: all((folder / INSPECTED / name).is_file() for name in must), f"{must} moved into {INSPECTED}/")
    for name in inspected_in_order:
        assert (folder / INSPECTED / name).is_file() != (folder / name).is_file(), name


# ---------------------------------------------------------------- the backlog, and where files go


def test_files_waiting_at_start_and_arriving_while_down_are_inspected_oldest_first(demo_model, images, tmp_path, loop_confirms):
    folder = tmp_path / "watched"
    folder.mkdir()
    names = [f"part-{i}.png" for i in range(5)]
    for age, name in enumerate(names):  # part-0 is the newest: oldest first is not name order
        drop(folder, name, images[age % len(images)], age_s=100 + age * 10)
    config = watch_config(tmp_path, demo_model, folder)
    witness = PlaceWitness(folder)
    with Watching(config, witness) as run:
        run.wait_sources(*names)
        assert run.sources() == names[::-1]
        # The source moved no file before its verdict was with the outputs, although the capture ran ahead.
        assert witness.in_place == dict.fromkeys(names, True)
        check_moved(folder, names[::-1], loop_confirms)
        assert run.faults() == []
    first_tail = [name for name in names[::-1] if (folder / name).exists()]  # oldest first

    arrived = [f"late-{i}.png" for i in range(3)]
    for i, name in enumerate(arrived):  # while the daemon is down
        drop(folder, name, images[i], age_s=30 - i)
    with Watching(config) as run:
        run.wait_sources(*arrived)
        # Inspected again only what the last run could not prove recorded (none when the loop confirms frames).
        assert run.sources() == first_tail + arrived
        check_moved(folder, first_tail + arrived, loop_confirms)
    waiting = {p.name for p in folder.iterdir() if p.is_file()}
    assert waiting | {p.name for p in (folder / INSPECTED).iterdir()} == set(names + arrived)
    assert len(waiting) == (0 if loop_confirms else CONFIRM_LAG)


def test_backlog_skip_moves_waiting_files_aside_with_one_record(demo_model, images, tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    waiting = [f"old-{i}.png" for i in range(3)]
    for name in waiting:
        drop(folder, name, images[0], age_s=60)
    with Watching(watch_config(tmp_path, demo_model, folder, backlog="skip")) as run:
        run.wait(lambda m: any("skipped the 3 files" in e.message for e in m.events), "the skip record")
        drop(folder, "new.png", images[1])
        run.wait_sources("new.png")
        assert run.sources() == ["new.png"]
        skipped = [message for message in run.faults() if "skipped" in message]
        assert len(skipped) == 1 and f"{folder / SKIPPED}/" in skipped[0], skipped
    assert sorted(p.name for p in (folder / SKIPPED).iterdir()) == waiting


def test_done_delete_removes_inspected_files(demo_model, images, tmp_path, loop_confirms):
    folder = tmp_path / "watched"
    folder.mkdir()
    names = [f"part-{i}.png" for i in range(4)]
    with Watching(watch_config(tmp_path, demo_model, folder, done="delete")) as run:
        for name in names:
            drop(folder, name, images[1])
            run.wait_sources(name)
        gone = names if loop_confirms else names[:-CONFIRM_LAG]
        until(lambda: not any((folder / name).exists() for name in gone), f"{gone} deleted")
    assert not (folder / INSPECTED).exists()


def test_a_file_that_cannot_be_moved_is_inspected_once_and_reported_once(demo_model, images, tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    (folder / INSPECTED).write_text("a file where the sub-folder should be")  # every move fails
    names = [f"part-{i}.png" for i in range(4)]
    with Watching(watch_config(tmp_path, demo_model, folder)) as run:
        for name in names:
            drop(folder, name, images[2])
            run.wait_sources(name)
        drop(folder, "marker.png", images[2])  # newest: by the time it is inspected, the others were rescanned many times
        run.wait_sources("marker.png")
        assert Counter(run.sources()) == Counter(names + ["marker.png"])
        trouble = [message for message in run.faults() if "cannot be moved" in message]
        assert len(trouble) == 1 and "will be inspected again after a restart" in trouble[0], run.faults()
    assert all((folder / name).is_file() for name in names)


# ---------------------------------------------------------------- partial and undecodable files


def test_a_file_written_slowly_in_place_is_read_once_complete(demo_model, images, tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    settle_s = 0.3
    data = images[0].read_bytes()
    with Watching(watch_config(tmp_path, demo_model, folder, settle_s=settle_s)) as run:
        with open(folder / "paused.png", "wb") as out:  # half, a pause longer than settle_s (so it is read half), the rest
            out.write(data[: len(data) // 2])
            out.flush()
            time.sleep(settle_s * UNREADABLE_AFTER / 3)
            out.write(data[len(data) // 2:])
        with open(folder / "trickled.png", "wb") as out:  # small pieces, short pauses
            for start in range(0, len(data), len(data) // 10):
                out.write(data[start : start + len(data) // 10])
                out.flush()
                time.sleep(settle_s / 5)
        run.wait_sources("paused.png", "trickled.png")
        assert run.faults() == []
        whole = cv2.imread(str(images[0]))
        assert all(np.array_equal(v.pixels, whole) for v in run.memory.verdicts)
        assert sorted(run.sources()) == ["paused.png", "trickled.png"]


def test_undecodable_files_are_one_fault_each_and_moved_to_failed(demo_model, images, tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    data = images[0].read_bytes()
    (folder / "old-corrupt.png").write_bytes(b"not an image at all")
    os.utime(folder / "old-corrupt.png", (time.time() - 3600, time.time() - 3600))
    with Watching(watch_config(tmp_path, demo_model, folder)) as run:
        (folder / "fresh-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
        (folder / "truncated.png").write_bytes(data[: len(data) // 2])  # a writer that died half way
        (folder / "empty.jpg").write_bytes(b"")
        bad = ["old-corrupt.png", "fresh-corrupt.png", "truncated.png", "empty.jpg"]
        run.wait(lambda m: all(any(name in e.message for e in m.events) for name in bad), "a fault for each undecodable file")
        drop(folder, "good.png", images[0])
        run.wait_sources("good.png")
        drop(folder, "later.png", images[0])  # rescanned many times since: still one record each
        run.wait_sources("later.png")
        assert run.sources() == ["good.png", "later.png"]
        for name in bad:
            records = [message for message in run.faults() if f"/{name}:" in message]
            assert len(records) == 1 and f"moved to {FAILED}/" in records[0], (name, run.faults())
    assert sorted(p.name for p in (folder / FAILED).iterdir()) == sorted(bad)


# ---------------------------------------------------------------- what is not a part


def test_special_files_named_like_images_are_reported_once_and_never_block(demo_model, images, tmp_path, loop_confirms):
    folder = tmp_path / "watched"
    folder.mkdir()
    os.mkfifo(folder / "fifo.png")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    short = Path(tempfile.mkdtemp(dir="/tmp"))  # a socket's path must fit in 108 bytes: made there, renamed in
    listener.bind(str(short / "s"))
    os.rename(short / "s", folder / "socket.png")
    short.rmdir()
    (folder / "folder.png").mkdir()
    (folder / "device.png").symlink_to("/dev/null")
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    (folder / "loop-a.png").symlink_to(folder / "loop-b.png")
    (folder / "loop-b.png").symlink_to(folder / "loop-a.png")
    (folder / "to-folder.png").symlink_to(tmp_path)
    outside = tmp_path / "outside.png"
    shutil.copyfile(images[1], outside)
    (folder / "link.png").symlink_to(outside)
    special = ["fifo.png", "socket.png", "folder.png", "device.png", "dangling.png", "loop-a.png", "loop-b.png", "to-folder.png"]
    try:
        with Watching(watch_config(tmp_path, demo_model, folder)) as run:
            drop(folder, "good.png", images[0])
            run.wait_sources("good.png", "link.png")
            run.wait(lambda m: all(any(f"/{name}:" in e.message for e in m.events) for name in special), "a fault for each")
            drop(folder, "later.png", images[0])
            run.wait_sources("later.png")
            assert sorted(run.sources()) == ["good.png", "later.png", "link.png"]
            for name in special:
                records = [message for message in run.faults() if f"/{name}:" in message]
                assert len(records) == 1 and "reported once" in records[0], (name, run.faults())
            order = run.sources()
            check_moved(folder, order, loop_confirms)
    finally:
        listener.close()
    assert all(os.path.lexists(folder / name) for name in special)  # left where they are
    assert outside.is_file()  # a symlink moves, not what it points to


def test_hidden_and_temporary_names_wait_until_renamed(demo_model, images, tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    temporary = [".hidden.png", "part.png.tmp", "part.png.part", "~lock.png", "x.png.crdownload"]
    with Watching(watch_config(tmp_path, demo_model, folder)) as run:
        for name in temporary:
            shutil.copyfile(images[0], folder / name)
        drop(folder, "marker.png", images[0])
        run.wait_sources("marker.png")
        time.sleep(SETTLE_S * 3)  # scanned again, long settled
        drop(folder, "marker-2.png", images[0])
        run.wait_sources("marker-2.png")
        assert run.sources() == ["marker.png", "marker-2.png"] and run.faults() == []
        final = [f"renamed-{i}.png" for i in range(len(temporary))]
        for name, new in zip(temporary, final):
            os.rename(folder / name, folder / new)
        run.wait_sources(*final)
        assert run.faults() == []


def test_odd_names_are_inspected_and_recorded_as_text(demo_model, images, tmp_path, loop_confirms):
    folder = tmp_path / "watched"
    folder.mkdir()
    odd = [b"not-utf8-\xff\xfe.png", ("p" * 251 + ".png").encode(), b"new\nline.png", "mug \u00fcn\u00efcode \u2713.png".encode()]
    with Watching(watch_config(tmp_path, demo_model, folder)) as run:
        for name in odd:
            drop(folder, name, images[0])
        run.wait(lambda m: len(m.verdicts) == len(odd), "a verdict for each odd name")
        for source in run.sources():
            source.encode("utf-8")  # no lone surrogates: journald and stderr take it
            assert not re.search(r"[\x00-\x1f\x7f]", source), source
        assert r"not-utf8-\xff\xfe.png" in run.sources() and r"new\x0aline.png" in run.sources()
        assert run.faults() == []
        inspected = os.fsencode(folder / INSPECTED)
        done = odd if loop_confirms else []
        until(lambda: all(os.path.exists(os.path.join(inspected, name)) for name in done), "odd names moved")

        # The same name twice: the second is inspected too, and kept beside the first.
        drop(folder, "same.png", images[0])
        for i in range(CONFIRM_LAG):
            drop(folder, f"after-{i}.png", images[0], age_s=-1 - i)  # newer, so inspected after same.png
        until(lambda: (folder / INSPECTED / "same.png").is_file(), "the first same.png moved")
        drop(folder, "same.png", images[1])
        for i in range(CONFIRM_LAG):
            drop(folder, f"then-{i}.png", images[0], age_s=-1 - i)
        until(lambda: (folder / INSPECTED / "same~2.png").is_file(), "the second same.png moved beside the first")
        assert run.sources().count("same.png") == 2


# ---------------------------------------------------------------- the folder itself


def test_the_watched_folder_vanishing_is_a_fault_and_inspection_resumes_when_it_is_back(demo_model, images, tmp_path, loop_confirms):
    folder = tmp_path / "watched"
    away = tmp_path / "away"
    folder.mkdir()
    with Watching(watch_config(tmp_path, demo_model, folder)) as run:
        drop(folder, "before.png", images[0])
        run.wait_sources("before.png")
        if loop_confirms:  # confirmed (moved aside) after its record: pulling the folder away before that leaves it to inspect again
            until(lambda: (folder / INSPECTED / "before.png").exists(), "before.png moved to inspected/")

        folder.rename(away)  # gone (an unmounted share, a removed folder)
        run.wait(lambda m: any("cannot be listed" in e.message for e in m.events), "the source fault")
        until(lambda: run.station.tally.source_down, "the station marked the source down (the ready line stops)")
        for name in ("waiting-1.png", "waiting-2.png"):
            drop(away, name, images[1])
        away.rename(folder)
        run.wait(lambda m: any(e.kind == "start" and "is back" in e.message for e in m.events), "the source restored record")
        run.wait_sources("waiting-1.png", "waiting-2.png")
        assert not run.station.tally.source_down

        while folder.exists():  # removed for good (while the station may be moving a file in it), then made again
            shutil.rmtree(folder, ignore_errors=True)
        run.wait(lambda m: sum("cannot be listed" in e.message for e in m.events) >= 2, "the second source fault")
        folder.mkdir()
        drop(folder, "after.png", images[0])
        run.wait_sources("after.png")
        assert run.error is None
        seen = Counter(run.sources())
        if not loop_confirms:  # the reopened source cannot know before.png was recorded: inspected again, never lost
            assert seen.pop("before.png") in (1, 2)
            seen["before.png"] = 1
        assert seen == Counter(["before.png", "waiting-1.png", "waiting-2.png", "after.png"])


def test_opening_a_missing_folder_is_a_source_fault_and_a_missing_folder_at_start_a_config_error(demo_model, tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    config = DirectoryConfig(path=str(folder), mode="watch")
    folder.rmdir()
    with pytest.raises(SourceFault, match="cannot be listed"):
        config.open()  # the capture thread retries this with backoff

    config_file = watch_config(tmp_path, demo_model, folder)
    with pytest.raises(ConfigError, match="key source.path: .* is not a folder"):
        load(config_file)
    result = run_cli("run", "--config", config_file)
    assert result.returncode == 78 and "key source.path" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_watch_keys_are_refused_for_a_replay(tmp_path, images):
    for key, value in (("backlog", "skip"), ("done", "delete"), ("settle_s", 1.0)):
        with pytest.raises(ConfigError, match=f"key {key}: applies to mode = 'watch' only"):
            DirectoryConfig(path=str(images[0].parent), mode="loop", **{key: value})


# ---------------------------------------------------------------- kill -9


DROPPER = r"""
import os, random, shutil, sys, time
folder, images, count, seed = sys.argv[1], sys.argv[2:-2], int(sys.argv[-2]), int(sys.argv[-1])
rng = random.Random(seed)
for i in range(count):
    name, image = f"part-{i:04d}.png", images[i % len(images)]
    if i % 3:  # the safe way: a temporary name, then a rename
        temporary = os.path.join(folder, f".{name}.tmp")
        shutil.copyfile(image, temporary)
        os.rename(temporary, os.path.join(folder, name))
    else:  # in place, slowly, in pieces; every other one pausing longer than settle_s (read half, then again)
        data = open(image, "rb").read()
        with open(os.path.join(folder, name), "wb") as out:
            for piece, start in enumerate(range(0, len(data), len(data) // 4 + 1)):
                out.write(data[start : start + len(data) // 4 + 1])
                out.flush()
                time.sleep(0.6 if piece == 1 and i % 2 else 0.05)
    time.sleep(rng.uniform(0.05, 0.5))
"""
VERDICT_LINE = re.compile(r"^inspectd: (?:PASS|REJECT) frame \d+ score .*\(\S+ ms\) (\S+)$")


def test_kill_9_at_random_moments_then_restart_loses_nothing(demo_model, images, tmp_path, loop_confirms):
    """The real daemon over a folder that another process fills, killed with SIGKILL at random moments and restarted:
    at the end every file has at least one verdict record and is in inspected/."""
    folder = tmp_path / "watched"
    folder.mkdir()
    config = watch_config(tmp_path, demo_model, folder, journal=True, settle_s=0.3)
    seed = int(os.environ.get("INSPECTD_KILL_SEED", random.randrange(1 << 30)))
    rng, count = random.Random(seed), 100
    dropper = subprocess.Popen([sys.executable, "-c", DROPPER, str(folder), *map(str, images), str(count), str(seed)])
    logs: list[Path] = []
    daemon: subprocess.Popen | None = None

    def start() -> subprocess.Popen:
        logs.append(tmp_path / f"run-{len(logs)}.log")
        with open(logs[-1], "w") as log:
            return subprocess.Popen([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=log)

    def verdicts() -> list[str]:
        return [match[1] for log in logs for line in log.read_text(errors="replace").splitlines() if (match := VERDICT_LINE.match(line))]

    try:
        while dropper.poll() is None:  # kill while files keep arriving: during start, inspection, moves
            daemon = start()
            time.sleep(rng.uniform(1.0, 7.0))
            daemon.kill()
            daemon.wait()
        kills = len(logs)
        names = [f"part-{i:04d}.png" for i in range(count)]
        daemon = start()
        until(lambda: "inspectd: started:" in logs[-1].read_text(errors="replace"), "the last daemon started")
        settled = names if loop_confirms else names[:-CONFIRM_LAG]
        until(lambda: all((folder / INSPECTED / name).is_file() for name in settled) and set(names) <= set(verdicts()),
              "every file inspected and moved")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        dropper.kill()
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
    records = Counter(verdicts())
    duplicates = sum(records.values()) - len(records)
    print(f"\nkill -9: seed {seed}, {kills} kills, {count} files, {sum(records.values())} verdict records, "
          f"{duplicates} duplicates from re-inspection after a kill, "
          f"{sum((folder / INSPECTED / n).is_file() for n in names)} in {INSPECTED}/, "
          f"{sum((folder / n).is_file() for n in names)} still waiting")
    assert set(records) == set(names)  # every file has a verdict record, and nothing else does
    for name in names:
        assert (folder / INSPECTED / name).is_file() != (folder / name).is_file(), name  # exactly one place: never lost
    assert not (folder / FAILED).exists()
