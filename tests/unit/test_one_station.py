"""Issue 17, class 5: one station per resource.

A watched folder and an archive folder are locked (flock) by the station that uses them; a second user is refused
in one line naming the process that holds them (PID and command). ``inspectd collect`` with the station's watch
configuration reads the parts and leaves them for the station; while a station consumes the folder it is refused.
GPIO lines are the kernel's to give (one request per line): the error names the holder's PID and command.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL, cli, synthetic_verdict
from inspectd.daemon.station.outputs.archive import ArchiveConfig, ArchiveOutput
from inspectd.daemon.station.sources import DirectoryConfig, SourceFault
from inspectd.daemon.station.sources.directory import INSPECTED


def parts(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        made.append(folder / f"part-{index:02d}.png")
        cv2.imwrite(str(made[-1]), np.full((40, 60, 3), 60 + index, np.uint8))
        os.utime(made[-1], (time.time() - 10, time.time() - 10))  # settled long ago
    return made


def watch_config(tmp_path: Path, watched: Path, archive: str = 'enabled = false') -> Path:
    path = tmp_path / "inspectd.toml"
    path.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{watched}"\nmode = "watch"\nsettle_s = 0.0\n'
                    f'[journal]\nenabled = false\n[archive]\n{archive}\n')
    return path


def test_a_second_watcher_of_a_folder_is_refused_naming_the_first(tmp_path):
    watched = tmp_path / "incoming"
    parts(watched, 2)
    config = DirectoryConfig(path=str(watched), mode="watch", settle_s=0.0)
    first = config.open()
    try:
        with pytest.raises(SourceFault, match=rf"the watched folder {watched} is in use by PID {os.getpid()} \("):
            DirectoryConfig(path=str(watched), mode="watch", settle_s=0.0).open()
    finally:
        first.close()
    second = DirectoryConfig(path=str(watched), mode="watch", settle_s=0.0).open()  # free again once the first let go
    second.close()


def test_collect_with_the_watch_configuration_leaves_the_parts_for_the_station(tmp_path):
    watched = tmp_path / "incoming"
    waiting = parts(watched, 4)
    before = {p.name: p.read_bytes() for p in waiting}
    done = cli("collect", "--config", watch_config(tmp_path, watched), "--out", tmp_path / "dataset", "--count", "4")
    assert done.returncode == 0, done.stderr
    assert {p.name: p.read_bytes() for p in watched.glob("*.png")} == before, "every part still waits for its verdict"
    assert not (watched / INSPECTED).exists()
    assert len(list((tmp_path / "dataset" / "train" / "good").glob("*.png"))) == 4


def test_collect_is_refused_while_a_station_consumes_the_folder(tmp_path):
    watched = tmp_path / "incoming"
    waiting = parts(watched, 3)
    station = DirectoryConfig(path=str(watched), mode="watch", settle_s=0.0).open()  # what a running station holds
    try:
        done = cli("collect", "--config", watch_config(tmp_path, watched), "--out", tmp_path / "dataset", "--count", "2")
    finally:
        station.close()
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"in use by PID {os.getpid()} (" in done.stderr
    assert sorted(watched.glob("*.png")) == waiting and not (tmp_path / "dataset" / "train" / "good").exists()


def test_a_second_archive_on_one_folder_writes_nothing_and_says_who_holds_it(tmp_path):
    """At start ``run`` refuses it (below); an archive opened anyway (a race) writes nothing there and says why."""
    folder = tmp_path / "rejects"
    first = ArchiveOutput(ArchiveConfig(path=str(folder)))
    first.start()
    seen: list = []
    try:
        second = ArchiveOutput(ArchiveConfig(path=str(folder), max_mb=20.0), seen.append)
        second.start()
        second.verdict(synthetic_verdict(1))
        second.close()
    finally:
        first.close()
    assert [n.fields.get("fault") for n in seen] == ["archive"], seen
    assert f"the archive folder {folder} is in use by PID {os.getpid()} (" in seen[0].message
    assert sorted(p.name for p in folder.iterdir()) == [".inspectd-archive"], "nothing written by the second"
    third = ArchiveOutput(ArchiveConfig(path=str(folder)))
    third.start()  # free once the first closed
    third.verdict(synthetic_verdict(2))
    third.close()
    assert len(list(folder.glob("*-00000002-reject*"))) == 2  # the frame and its heatmap picture


def test_run_refuses_a_watched_folder_or_archive_another_process_holds(tmp_path):
    """What `run` says before it starts (preflight, exit 78): the holder, in one line."""
    watched = tmp_path / "incoming"
    parts(watched, 1)
    held = DirectoryConfig(path=str(watched), mode="watch", settle_s=0.0).open()
    try:
        done = cli("run", "--config", watch_config(tmp_path, watched), "--frames", "1")
    finally:
        held.close()
    assert done.returncode == 78 and done.stderr.count("\n") == 1, done.stderr
    assert "key source.path: the watched folder" in done.stderr and f"in use by PID {os.getpid()} (" in done.stderr
    assert not (watched / INSPECTED).exists()


def test_a_gpio_holder_is_named_with_its_pid_and_command():
    from inspectd.daemon.gpio import holder

    assert holder(f"inspectd-reject:{os.getpid()}").startswith(f"'inspectd-reject:{os.getpid()}' (PID {os.getpid()}: ")
    assert holder("w1-gpio") == "'w1-gpio'" and holder("") == "another program or a kernel driver"
