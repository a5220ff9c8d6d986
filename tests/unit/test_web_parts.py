"""The station page's parts, each on its own: its configuration, the shift fold, the headers and password,
files that cannot leave their folder, the gallery, the live tap's format, and the tap that writes it."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import cli
from inspectd.daemon.errors import ConfigError
from inspectd.daemon.livetap import STATE_FILE, LiveFormatError, LiveState
from inspectd.daemon.records import MESSAGE_IDS, RecordKind, VerdictRecord
from inspectd.daemon.station.outputs.interface import EventKind
from inspectd.daemon.station.outputs.live import LiveConfig, LiveTap, Shown, aids
from inspectd.daemon.web import station_facts
from inspectd.daemon.web.files import Refused, read_in
from inspectd.daemon.web.gallery import SERVED, pictures
from inspectd.daemon.web.journal import shift_start
from inspectd.daemon.web.security import credentials_match, host_allowed
from inspectd.daemon.web.settings import WebConfig, load
from inspectd.daemon.web.shift import Normal, Shift

T0 = datetime(2026, 12, 1, 6, 0)


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("listen", ["0.0.0.0", "192.168.10.5", "::"])
def test_off_loopback_the_page_needs_a_password_and_https(listen):
    with pytest.raises(ConfigError, match="password, certificate and key are not set"):
        WebConfig(listen=listen)
    with pytest.raises(ConfigError, match="certificate and key are not set"):
        WebConfig(listen=listen, password="web-password")
    with pytest.raises(ConfigError, match="password is not set"):
        WebConfig(listen=listen, certificate="c.pem", key="k.pem")
    assert WebConfig(listen=listen, password="web-password", certificate="c.pem", key="k.pem").https


@pytest.mark.parametrize("listen", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_loopback_needs_nothing_more(listen):
    assert not WebConfig(listen=listen).https


def test_mistakes_are_one_line_naming_the_key(tmp_path):
    for text, key in (('listen = "station.local"', "listen"), ('certificate = "c.pem"', "key"), ('shifts = ["6:00"]', "shifts"),
                      ("port = 70000", "port"), ('passwd = "x"', "passwd"), ('password = "../etc/shadow"', "password")):
        path = tmp_path / "web.toml"
        path.write_text(text + "\n")
        with pytest.raises(ConfigError) as raised:
            load(path)
        assert f"key {key}" in str(raised.value) and str(path) in str(raised.value), text


def test_the_command_refuses_an_open_listener_with_exit_78(tmp_path):
    result = cli("web", "--config", tmp_path / "absent.toml", "--listen", "0.0.0.0", "--port", "18999")
    assert result.returncode == 78
    assert result.stderr.count("\n") == 1 and "needs a password and HTTPS" in result.stderr, result.stderr


def test_the_password_comes_from_the_systemd_credential(tmp_path, monkeypatch):
    config = WebConfig(password="web-password")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="LoadCredential=web-password"):
        config.read_password()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match="cannot be read"):
        config.read_password()
    (tmp_path / "web-password").write_text("short\n")
    with pytest.raises(ConfigError, match="at least 12"):
        config.read_password()
    (tmp_path / "web-password").write_text("correct horse battery\n")
    assert config.read_password() == "correct horse battery"
    assert WebConfig().read_password() is None


def test_the_page_assumes_the_station_defaults_the_station_has():
    """station_facts mirrors the station's defaults (it may not import them: OpenCV would double the page's memory)."""
    from inspectd.daemon.station.config import ArchiveConfig, DriftConfig, ModelConfig
    from inspectd.daemon.station.sources import SOURCES
    from inspectd.daemon.station.tally import UNJUDGED_IN_A_ROW

    assert station_facts.MODEL_PATH == ModelConfig().path
    assert station_facts.ARCHIVE_PATH == ArchiveConfig().path
    assert (station_facts.LIVE_PATH, station_facts.LIVE_RATE_HZ) == (LiveConfig().path, LiveConfig().rate_hz)
    assert station_facts.SOURCE_KIND == SOURCES.default
    assert (station_facts.DRIFT_WINDOW, station_facts.DRIFT_LIMIT_SIGMA) == (DriftConfig().window, DriftConfig().limit_sigma)
    assert station_facts.UNJUDGED_IN_A_ROW == UNJUDGED_IN_A_ROW
    facts = station_facts.read_station("/nonexistent/inspectd.toml")
    assert facts.problems and facts.live_folder == "/run/inspectd/live"


def test_station_facts_read_what_the_station_file_says(tmp_path):
    path = tmp_path / "inspectd.toml"
    path.write_text('[model]\npath = "/m"\nthreshold = 12\n[archive]\npath = "/a"\n[live]\nrate_hz = 0\n[source]\nroi = [1, 2, 3, 4]\n'
                    '[drift]\nwindow = "many"\n[gpio.ready]\nline = "GPIO27"\n')
    facts = station_facts.read_station(path)
    assert (facts.model_path, facts.threshold_override, facts.archive_path, facts.roi, facts.ready_line) == ("/m", 12.0, "/a", [1, 2, 3, 4], "GPIO27")
    assert not facts.live_on and facts.drift_window == 200 and "drift.window" in facts.problems[0]


def test_shifts_start_at_the_latest_time_at_or_before_now():
    shifts = ["06:00", "14:00", "22:00"]
    assert shift_start(datetime(2026, 12, 1, 13, 59), shifts) == datetime(2026, 12, 1, 6)
    assert shift_start(datetime(2026, 12, 1, 14, 0), shifts) == datetime(2026, 12, 1, 14)
    assert shift_start(datetime(2026, 12, 1, 3, 0), shifts) == datetime(2026, 11, 30, 22)


# ---------------------------------------------------------------- the shift fold


def record(kind: RecordKind, at: datetime, message: str = "", **fields: object) -> dict:
    return {"MESSAGE_ID": MESSAGE_IDS[kind], "MESSAGE": message, "__REALTIME_TIMESTAMP": at,
            **{f"INSPECTD_{name.upper()}": str(value) for name, value in fields.items()}}


def verdict(at: datetime, frame: int, score: float, threshold: float = 10.0, image: str | None = None) -> dict:
    fields = VerdictRecord(frame=frame, verdict="REJECT" if score > threshold else "PASS", score=score, threshold=threshold, latency_ms=5.0,
                           model="ab" * 32, source=f"{frame}.png", precision="f32", image=image).fields()
    return {"MESSAGE_ID": MESSAGE_IDS[RecordKind.VERDICT], "__REALTIME_TIMESTAMP": at, **fields}


def test_the_shift_counts_from_its_start_and_the_state_from_the_last_start():
    shift = Shift(start=T0, normal=Normal(4.0, 2.0), drift_window=3)
    shift.add(record(RecordKind.START, T0 - timedelta(hours=3), "started", model="ab" * 32, precision="bf16"))
    shift.add(verdict(T0 - timedelta(minutes=1), 1, 50.0))  # before the shift: state only
    shift.add(record(RecordKind.FAULT, T0 - timedelta(seconds=30), "camera gone", fault="source"))
    assert shift.ready()["state"] == "source down" and shift.frames == 0 and not shift.faults
    shift.add(record(RecordKind.START, T0 + timedelta(seconds=1), "camera back", recovered="source"))
    for n, score in enumerate((6.0, 8.0, 10.0, 25.0), start=2):
        shift.add(verdict(T0 + timedelta(seconds=n), n, score, image=f"/a/2026-{n}-reject.png" if score > 10 else None))
    state = shift.to_json()
    assert (state["frames"], state["rejects"], state["reject_rate"]) == (4, 1, 0.25)
    assert state["ready"]["running"] and state["precision"] == "f32"
    assert state["verdicts"][0]["frame"] == 5 and "2026-5-reject.png" in shift.images
    assert state["drift"]["shift_sigmas"] == pytest.approx((8.0 - 4.0) / 2.0) and state["drift"]["window_sigmas"] == pytest.approx(2.0)


def test_the_ready_line_stops_for_each_of_the_station_reasons():
    shift = Shift(start=T0)
    assert shift.ready()["state"] == "unknown"
    shift.add(record(RecordKind.START, T0, "started"))
    for n in range(3):
        assert shift.ready()["running"]
        shift.add(record(RecordKind.FAULT, T0, f"{n}.png: not a readable image", fault="frame"))
    assert shift.ready()["state"] == "not judging" and "last 3 frames" in shift.ready()["why"]
    shift.add(verdict(T0, 9, 1.0))
    assert shift.ready()["running"]
    shift.add(record(RecordKind.FAULT, T0, "gpio write failed", fault="health"))
    assert shift.ready()["state"] == "line failing"
    shift.add(record(RecordKind.START, T0, "works again", recovered="health"))
    shift.add(record(RecordKind.STOP, T0, "stopped (stopped): 9 frames"))
    assert shift.ready() == {"running": False, "state": "stopped", "since": T0.isoformat(timespec="seconds"),
                             "why": "the station is not running: stopped (stopped): 9 frames"}
    assert shift.faults == {"frame": 3, "health": 1}


def test_drift_alarms_and_malformed_records():
    shift = Shift(start=T0)
    shift.add(record(RecordKind.DRIFT, T0, "drift at frame 9", drift_sigma="+2.10"))
    assert shift.drift()["alarm"]["sigma"] == 2.1
    shift.add(record(RecordKind.DRIFT_OVER, T0, "drift over"))
    broken = verdict(T0, 3, 1.0) | {"INSPECTD_SCORE": "nan"}
    shift.add(broken)
    assert shift.drift()["alarm"] is None and shift.malformed == 1 and shift.frames == 0


def test_with_rejects_only_in_the_journal_frames_come_from_the_summaries():
    shift = Shift(start=T0)
    shift.add(record(RecordKind.START, T0 - timedelta(hours=1), "started"))
    shift.add(record(RecordKind.SUMMARY, T0 - timedelta(minutes=1), "", frames=1000))
    shift.add(record(RecordKind.SUMMARY, T0 + timedelta(minutes=1), "", frames=1600))
    shift.add(verdict(T0 + timedelta(minutes=2), 1700, 50.0))
    shift.add(record(RecordKind.SUMMARY, T0 + timedelta(minutes=3), "", frames=2200))
    state = shift.to_json()
    assert state["frames"] == 1200 and state["rejects"] == 1 and state["from_summaries"]


# ---------------------------------------------------------------- security


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_hosts_and_passwords():
    assert host_allowed("127.0.0.1:8080", "127.0.0.1", []) and host_allowed("[::1]:8080", "127.0.0.1", [])
    assert host_allowed("Station-7:8080", "127.0.0.1", ["station-7"])
    assert not host_allowed("attacker.example", "127.0.0.1", []) and not host_allowed(None, "127.0.0.1", [])
    assert not host_allowed("127.0.0.1.attacker.example", "127.0.0.1", [])
    assert credentials_match(basic("inspectd", "s3cret-s3cret"), "inspectd", "s3cret-s3cret")
    for header in (basic("inspectd", "wrong"), basic("root", "s3cret-s3cret"), "Basic !!!", "Bearer s3cret-s3cret", None, ""):
        assert not credentials_match(header, "inspectd", "s3cret-s3cret"), header


# ---------------------------------------------------------------- files, gallery, format


def test_files_cannot_leave_their_folder(tmp_path):
    folder, outside = tmp_path / "archive", tmp_path / "secret.png"
    folder.mkdir()
    outside.write_bytes(b"secret")
    name = "20261201-060000-00000001-reject.png"
    (folder / name).write_bytes(b"png")
    assert read_in(folder, name, SERVED) == b"png"
    (folder / "20261201-060000-00000002-reject.png").symlink_to(outside)
    (folder / "20261201-060000-00000003-reject.png").mkdir()
    for bad in ("../secret.png", "..", "%2e%2e", "/etc/passwd", "20261201-060000-00000002-reject.png", "20261201-060000-00000003-reject.png",
                "20261201-060000-00000004-reject.png", name + "/../../secret.png"):
        with pytest.raises(Refused):
            read_in(folder, bad, SERVED)


def test_the_gallery_lists_rejects_newest_first_with_their_heatmaps(tmp_path):
    names = ["20261201-060000-00000001-reject.png", "20261201-070000-00000002-pass.png", "20261201-080000-00000003-reject.png",
             "20261201-090000-00000004-reject.png"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "20261201-080000-00000003-reject-heatmap.png").write_bytes(b"x")  # an older version's heatmap picture
    (tmp_path / "20261201-090000-00000004-reject-heatmap.jpg").write_bytes(b"x")  # today's
    for name in names:
        os.utime(tmp_path / name, (1_000_000, 1_000_000))  # long written: a frame without a heatmap had its heatmap fail
    (tmp_path / "20261201-100000-00000005-reject.png").symlink_to(tmp_path / names[0])
    (tmp_path / "20261201-110000-00000006-reject.png").write_bytes(b"x")  # just written: its heatmap is on its way
    (tmp_path / "notes.txt").write_text("x")
    found = pictures(tmp_path)
    assert [p.frame for p in found] == [4, 3, 1] and found[1].heatmap == "20261201-080000-00000003-reject-heatmap.png"
    assert found[0].heatmap == "20261201-090000-00000004-reject-heatmap.jpg" and found[2].heatmap is None
    assert [p.frame for p in pictures(tmp_path, before=names[2])] == [1]
    assert [p.frame for p in pictures(tmp_path, verdict=None)] == [4, 3, 2, 1]
    assert pictures(tmp_path / "absent") == []


def test_the_live_format_round_trips_and_refuses_what_it_cannot_show():
    state = LiveState(seq=7, time=1.0, mode="inspecting", frame="00000007.jpg", frame_size=(640, 480), shown_size=(640, 480),
                      heatmap="00000007-heatmap.png", region=[0, 0, 1, 1])
    assert LiveState.from_json(json.loads(json.dumps(state.to_json()))) == state
    for change in ({"frame": "../../etc/passwd"}, {"heatmap": "x.svg"}, {"version": 2}, {"mode": "judging"}, {"seq": "many"}):
        with pytest.raises(LiveFormatError):
            LiveState.from_json(state.to_json() | change)


# ---------------------------------------------------------------- the tap


def test_setup_aids_measure_focus_exposure_and_clipping():
    rng = np.random.default_rng(0)
    sharp = (rng.random((240, 320)) > 0.5).astype(np.uint8) * 200 + 20
    blurred = cv2.GaussianBlur(sharp, (9, 9), 3)
    assert aids(sharp, 0).sharpness > 4 * aids(blurred, 0).sharpness > 0
    frame = np.full((100, 100, 3), 128, np.uint8)
    frame[:10] = 0  # 10% black
    frame[10:16] = 255  # 6% white
    measured = aids(frame, 12.5)
    assert measured.clipped_dark == pytest.approx(0.10) and measured.clipped_bright == pytest.approx(0.06)
    assert sum(measured.histogram) == 50 * 50 and measured.histogram[32] == 50 * 42 and measured.fps == 12.5  # every other row, column


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_tap_writes_at_its_rate_and_cleans_up(tmp_path):
    clock = Clock()
    tap = LiveTap(LiveConfig(path=str(tmp_path / "live"), rate_hz=2.0), clock=clock)
    assert [tap.due() for _ in range(3)] == [True, False, False]
    clock.now += 0.5
    assert tap.due()
    state = tap.write(Shown(np.zeros((1200, 1600, 3), np.uint8), 9.0, roi=[10, 10, 100, 100], note="setup"))
    for _ in range(4):
        state = tap.write(Shown(np.zeros((1200, 1600, 3), np.uint8), 9.0))
    written = json.loads((tmp_path / "live" / STATE_FILE).read_text())
    assert LiveState.from_json(written) == state and state.seq == 5 and state.shown_size == (960, 720)
    assert sorted(os.listdir(tmp_path / "live")) == ["00000003.jpg", "00000004.jpg", "00000005.jpg", STATE_FILE]
    tap.close()
    assert os.listdir(tmp_path / "live") == []


def test_a_tap_that_cannot_write_says_so_once_and_again_when_it_can(tmp_path):
    notices = []
    folder = tmp_path / "live"
    tap = LiveTap(LiveConfig(path=str(folder), rate_hz=30.0), on_fault=notices.append)
    frame = Shown(np.zeros((10, 10), np.uint8), 1.0)
    folder.rmdir()
    for _ in range(3):
        tap.deliver(frame)
    folder.mkdir()
    tap.deliver(frame)
    tap.deliver(frame)
    assert [n.kind for n in notices] == [EventKind.FAULT, EventKind.START], notices
    assert notices[0].fields["fault"] == "output" and notices[1].fields["recovered"] == "output"
    assert (folder / STATE_FILE).is_file()
    tap.close()


def test_the_tap_is_off_at_rate_0_and_without_a_place_to_write(monkeypatch):
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    assert LiveConfig().folder() is None and LiveConfig(path="/x", rate_hz=0).folder() is None
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/inspectd")
    assert LiveConfig().folder() == Path("/run/inspectd/live")
    assert not LiveTap(LiveConfig(rate_hz=0)).due()
    assert {spec.name for spec in fields(LiveConfig)} >= {"enabled", "path", "rate_hz"}


def test_the_reader_s_aware_times_fold_into_a_shift_of_local_times():
    """systemd-python 235 gives __REALTIME_TIMESTAMP with the local zone; shifts start at naive local times."""
    shift = Shift(start=T0)
    aware = (T0 + timedelta(minutes=5)).astimezone()
    shift.add(verdict(aware, 1, 50.0))
    shift.add(verdict((T0 - timedelta(minutes=5)).astimezone(), 2, 50.0))
    assert shift.frames == 1 and shift.rejects == 1


def test_the_tap_writes_less_often_rather_than_take_more_than_its_share_of_the_cpu(tmp_path):
    clock = Clock()
    tap = LiveTap(LiveConfig(path=str(tmp_path / "live"), rate_hz=2.0), clock=clock)
    assert tap.due()
    tap.busy_s += 1.0  # as if writing had taken a CPU second in a second
    clock.now += 1.0
    assert not tap.due() and tap.over_budget == 1
    clock.now += 60.0  # 1.5% of a minute's core is 0.9 s: still over
    assert not tap.due()
    clock.now += 10.0  # of 71 s: 1.07 s, the second is within it
    assert tap.due() and tap.over_budget == 2
