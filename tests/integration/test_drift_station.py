"""The drift alarm in the running station, with real parts: the demo model, generated demo scenes replayed from a
folder, the station loop; and the daemon as a process in a private journald with a real sd_notify socket, read back
by `inspectd report`.

The lamp: the second half of the replay is the same scenes 15 grey levels brighter. On the demo model that moves the
PASS scores by about +4 sigma of its normal scores and starts false rejects (about one frame in ten); the alarm must
come once, near the start of the change, before most of those rejects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL
from inspectd.testing.journald import private_journald, unavailable_reason
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.station.config import load
from inspectd.daemon.station.loop import Station
from inspectd.daemon.station.outputs import EventKind
from inspectd.daemon.station.outputs.journal import MESSAGE_IDS
from inspectd.daemon.station.outputs.memory import MemoryOutput
from test_station import NotifySocket

SCENES = 80  # as trained, then as many brighter
LAMP = 15  # grey levels added to every pixel of the second half
WINDOW = 20  # [drift] window for these short replays (the default 200 needs 200 PASS frames to say anything)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=SCENES, n_test_per_size=2)


@pytest.fixture(scope="module")
def lamp_midway(scenes, tmp_path_factory) -> Path:
    """a_000..a_079 as the scenes are, then b_000..b_079 the same scenes LAMP grey levels brighter."""
    folder = tmp_path_factory.mktemp("lamp")
    for index, path in enumerate(sorted((scenes / "test" / "good").glob("*.png"))):
        frame = cv2.imread(str(path))
        cv2.imwrite(str(folder / f"a_{index:03d}.png"), frame)
        cv2.imwrite(str(folder / f"b_{index:03d}.png"), np.clip(frame.astype(int) + LAMP, 0, 255).astype(np.uint8))
    return folder


def config_text(folder: Path, extra: str = "") -> str:
    return (f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{folder}"\n[archive]\nenabled = false\n'
            f'[journal]\nenabled = false\n[drift]\nwindow = {WINDOW}\n{extra}')


def replay(tmp_path: Path, folder: Path, extra: str = "", **station_args) -> tuple[MemoryOutput, Station]:
    path = tmp_path / "inspectd.toml"
    path.write_text(config_text(folder, extra))
    memory = MemoryOutput()
    station = Station(load(path), extra_outputs=[memory], **station_args)
    assert station.run() == 0
    return memory, station


def drift_events(memory: MemoryOutput) -> list:
    return [event for event in memory.events if event.kind in (EventKind.DRIFT, EventKind.DRIFT_OVER)]


def test_a_lamp_brighter_midway_raises_one_drift_record_before_the_false_rejects(lamp_midway, tmp_path):
    memory, station = replay(tmp_path, lamp_midway)
    assert len(memory.verdicts) == 2 * SCENES
    [alarm] = drift_events(memory)  # one record, not one per frame; never over: the lamp stays
    assert alarm.kind == EventKind.DRIFT
    at = int(alarm.fields["frame"])
    brighter = [v for v in memory.verdicts if v.source.startswith("b_")]
    assert brighter[0].frame == SCENES + 1 and not any(v.rejected for v in memory.verdicts if v.source.startswith("a_"))
    rejects_before = [v.frame for v in brighter if v.rejected and v.frame <= at]
    rejects_after = [v.frame for v in brighter if v.rejected and v.frame > at]
    print(f"\ndrift record at frame {at} (the {at - SCENES}th brighter frame), {alarm.fields['drift_sigma']}σ; "
          f"false rejects before it {len(rejects_before)} {rejects_before}, after it {len(rejects_after)}")
    assert SCENES < at <= SCENES + WINDOW  # within one window of the change
    assert len(rejects_after) >= 3 and len(rejects_before) < len(rejects_after)  # the false rejects mostly came after
    sigma = float(alarm.fields["drift_sigma"])
    assert sigma > float(alarm.fields["drift_limit"]) == 1.5
    assert alarm.fields["drift_window"] == WINDOW and float(alarm.fields["normal_mean"]) == pytest.approx(63.5628, abs=1e-3)
    # the window at the alarm: the last WINDOW PASS scores up to that frame
    passes = [v.score for v in memory.verdicts if not v.rejected and v.frame <= at][-WINDOW:]
    assert float(alarm.fields["window_mean"]) == pytest.approx(float(np.mean(passes)), abs=1e-3)
    assert sigma == pytest.approx((np.mean(passes) - 63.5628) / 9.5471, abs=0.01)
    assert "drift at frame" in alarm.message and "camera moved or the lighting changed" in alarm.message
    status = station.tally.status(time.monotonic())
    assert f"drift {station.pipeline.drift.shift:+.1f}σ" in status, status  # STATUS= shows it while it lasts


def test_frames_as_trained_raise_no_drift_record(lamp_midway, tmp_path):
    folder = tmp_path / "as-trained"
    folder.mkdir()
    for path in sorted(lamp_midway.glob("a_*.png")):
        (folder / path.name).symlink_to(path)
    memory, station = replay_loop(tmp_path, folder, 3 * SCENES)  # each scene three times over
    assert len(memory.verdicts) == 3 * SCENES and not any(v.rejected for v in memory.verdicts)
    assert drift_events(memory) == []
    watch = station.pipeline.drift
    assert watch is not None and len(watch.scores) == WINDOW and abs(watch.shift) < 1.5
    assert "drift" not in station.tally.status(time.monotonic())


def replay_loop(tmp_path: Path, folder: Path, frames: int) -> tuple[MemoryOutput, Station]:
    path = tmp_path / "inspectd.toml"
    path.write_text(config_text(folder).replace(f'path = "{folder}"\n', f'path = "{folder}"\nmode = "loop"\n'))
    memory = MemoryOutput()
    station = Station(load(path), frames=frames, extra_outputs=[memory])
    assert station.run() == 0
    return memory, station


def test_rejects_are_not_drift(scenes, lamp_midway, tmp_path):
    """Stained mugs (REJECT, scores far above the normal ones) between good ones: the window holds only the PASS scores."""
    folder = tmp_path / "stains"
    folder.mkdir()
    good = sorted(lamp_midway.glob("a_*.png"))[:30]
    stains = sorted((scenes / "test").glob("stain_*/*.png"))
    for index, path in enumerate(good):
        (folder / f"{index:03d}_good.png").symlink_to(path)
        if index % 3 == 0:
            (folder / f"{index:03d}_stain.png").symlink_to(stains[index // 3 % len(stains)])
    memory, station = replay(tmp_path, folder)
    rejects = [v for v in memory.verdicts if v.rejected]
    assert len(rejects) == 10 and all(v.source.endswith("_stain.png") for v in rejects)
    with_rejects = (np.mean([v.score for v in memory.verdicts][-WINDOW:]) - 63.5628) / 9.5471
    assert with_rejects > 1.5  # counting them would have alarmed
    assert drift_events(memory) == []
    assert list(station.pipeline.drift.scores) == [v.score for v in memory.verdicts if not v.rejected][-WINDOW:]


def test_a_model_folder_without_normal_scores_is_not_watched(lamp_midway, tmp_path):
    folder = tmp_path / "no-normal"
    shutil.copytree(DEMO_MODEL, folder)
    metadata = json.loads((folder / "inspectd.json").read_text())
    metadata["normal_scores"] = None
    (folder / "inspectd.json").write_text(json.dumps(metadata, indent=2))
    path = tmp_path / "inspectd.toml"
    path.write_text(config_text(lamp_midway).replace(str(DEMO_MODEL), str(folder)))
    memory = MemoryOutput()
    station = Station(load(path), extra_outputs=[memory])
    assert station.run() == 0
    assert station.pipeline.drift is None and station.pipeline.drift_note.startswith("drift: off: the model folder has no normal_scores")
    assert drift_events(memory) == [] and any(v.rejected for v in memory.verdicts)


# ---------------------------------------------------------------- the daemon, journald, STATUS and the report

_reason = unavailable_reason()


@pytest.mark.skipif(_reason is not None, reason=f"private journald unavailable: {_reason}")
def test_drift_record_in_the_journal_in_status_and_in_the_report(lamp_midway, tmp_path):
    config = tmp_path / "inspectd.toml"
    # 40 ms a frame: the seconds after the alarm hold several STATUS= lines
    config.write_text(config_text(lamp_midway, '[trigger]\nkind = "interval"\ninterval_ms = 40.0\n').replace(
        "[journal]\nenabled = false\n", "[journal]\nenabled = true\n"))
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        with private_journald(tmp_path / "journal") as jd:
            env = {**os.environ, "NOTIFY_SOCKET": notify.path}
            proc = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)], env=env,
                                 unit="inspectd.service", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            records = jd.read_records(_SYSTEMD_UNIT="inspectd.service")
            store = jd.store
    finally:
        notify.close()
    drift = [r for r in records if r.get("MESSAGE_ID") == MESSAGE_IDS[EventKind.DRIFT]]
    assert len(drift) == 1 and not [r for r in records if r.get("MESSAGE_ID") == MESSAGE_IDS[EventKind.DRIFT_OVER]]
    [record] = drift
    assert record["PRIORITY"] == "4" and record["SYSLOG_IDENTIFIER"] == "inspectd"
    assert float(record["INSPECTD_DRIFT_SIGMA"]) > 1.5 and record["INSPECTD_DRIFT_WINDOW"] == str(WINDOW)
    assert record["INSPECTD_DRIFT_LIMIT"] == "1.5" and record["INSPECTD_NORMAL_MEAN"] == "63.5628"
    assert record["INSPECTD_NORMAL_STD"] == "9.5471" and float(record["INSPECTD_WINDOW_MEAN"]) > 63.5628 + 1.5 * 9.5471
    assert SCENES < int(record["INSPECTD_FRAME"]) <= SCENES + WINDOW
    verdicts = [r for r in records if "INSPECTD_VERDICT" in r]
    assert len(verdicts) == 2 * SCENES
    # the record comes right after the verdict of the frame that raised it
    assert records[records.index(record) - 1]["INSPECTD_FRAME"] == record["INSPECTD_FRAME"]
    statuses = [message for _, message in notify.messages if "STATUS=" in message]
    drifting = [message for message in statuses if "; drift +" in message]
    assert drifting and all(message.split("; drift ")[1].split("σ")[0].startswith("+") for message in drifting), statuses[-3:]
    assert not any("drift" in message for message in statuses[:2])  # the first seconds: as trained
    report = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "report", "--directory", str(store), "--model", str(DEMO_MODEL),
                             "--every", "1s", "--json"], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["frames"] == 2 * SCENES and len(summary["drift_alarms"]) == 1
    assert summary["drift_alarms"][0]["message"] == record["MESSAGE"]
    text = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "report", "--directory", str(store), "--model", str(DEMO_MODEL)],
                          capture_output=True, text=True).stdout
    assert "drift alarms: 1" in text


def test_a_reload_keeps_the_window_and_a_changed_one_closes_the_alarm(lamp_midway, tmp_path):
    """`systemctl reload` with the same model and [drift]: the window and the alarm go on (no second record). With
    another [drift]: the alarm in progress is closed by a drift-over record and the watch starts empty."""
    from inspectd.daemon.station.sources import Frame

    path = tmp_path / "inspectd.toml"
    path.write_text(config_text(lamp_midway))
    memory = MemoryOutput()
    station = Station(load(path), config_path=path, extra_outputs=[memory])
    try:
        for image in sorted(lamp_midway.glob("b_*.png"))[:2 * WINDOW]:
            station.inspect(Frame(cv2.imread(str(image)), image.name, time.monotonic()))
        watch = station.pipeline.drift
        assert watch.alarmed and [e.kind for e in drift_events(memory)] == [EventKind.DRIFT]
        station.reload()
        assert station.pipeline.drift is watch and len(drift_events(memory)) == 1 and "drift +" in station.tally.status(time.monotonic())
        path.write_text(config_text(lamp_midway).replace(f"window = {WINDOW}", f"window = {WINDOW + 5}"))
        station.reload()
        assert [e.kind for e in drift_events(memory)] == [EventKind.DRIFT, EventKind.DRIFT_OVER]
        assert "closed by the reload" in drift_events(memory)[-1].message and "fault" not in [e.kind for e in memory.events]
        assert station.pipeline.drift is not watch and len(station.pipeline.drift.scores) == 0
        assert "drift" not in station.tally.status(time.monotonic())
    finally:
        station.close()
