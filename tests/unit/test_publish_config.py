"""The publisher's pieces that need no broker or journal: its configuration (one line per problem, exit 78), the
messages made from records (topics, payloads, idempotency keys), the station's state, the position file, the metrics'
text format (``promtool check metrics`` when installed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli
from inspectd.daemon.publish.config import is_loopback, load
from inspectd.daemon.publish.messages import StationState, Topics, home_assistant, record_message, record_payload
from inspectd.daemon.publish.metrics import Metrics
from inspectd.daemon.publish.position import Position, PositionFile
from inspectd.daemon.records import MESSAGE_IDS, RecordKind, VerdictRecord

STATION = "line3-cam1"
TOPICS = Topics("inspectd", STATION)
BOOT = "7466b0c4bec54f7cb6508269be7b31ee"


def verdict_entry(frame: int, verdict: str = "PASS", **extra: str) -> dict:
    record = VerdictRecord(frame=frame, verdict=verdict, score=3.5 if verdict == "PASS" else 9.25, threshold=6.5, latency_ms=21.5,
                           model="ab" * 32, source=f"part-{frame}.png", precision="f16",
                           image=f"/var/lib/inspectd/rejects/{frame}.png" if verdict == "REJECT" else None)
    return {"MESSAGE_ID": MESSAGE_IDS[RecordKind.VERDICT], "MESSAGE": record.message(), **record.fields(), "_BOOT_ID": BOOT,
            "_PID": "812", "_HOSTNAME": "pi-7", "__REALTIME_TIMESTAMP": "1796626472000000", "__MONOTONIC_TIMESTAMP": "5000000",
            "__CURSOR": f"s=1;i={frame}", **extra}


def event_entry(kind: RecordKind, message: str, monotonic: int = 1000, **fields: str) -> dict:
    return {"MESSAGE_ID": MESSAGE_IDS[kind], "MESSAGE": message, "_BOOT_ID": BOOT, "_PID": "812",
            "__REALTIME_TIMESTAMP": "1796626472000000", "__MONOTONIC_TIMESTAMP": str(monotonic), **{f"INSPECTD_{k.upper()}": v for k, v in fields.items()}}


# ---------------------------------------------------------------- configuration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "publish.toml"
    path.write_text(text)
    return path


def test_the_shipped_example_is_valid_and_says_what_it_would_do():
    result = cli("publish", "--config", ROOT / "systemd" / "publish.toml", "--check")
    assert result.returncode == 0, result.stderr
    assert "publishing to mqtt://localhost:1883 under inspectd/" in result.stdout and "metrics on http://0.0.0.0:9811/metrics" in result.stdout


def test_the_publish_command_loads_its_own_module_only():
    """`inspectd publish` stays light, as `inspectd web` does (cli.ALONE): no OpenCV, numpy, OpenVINO or station loop."""
    probe = ("import sys; from inspectd.daemon.cli import main; main(['publish', '--config', sys.argv[1], '--check']); "
             "print(sorted(m for m in ('numpy', 'cv2', 'openvino', 'inspectd.daemon.station.loop', 'inspectd.daemon.cli.run') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe, str(ROOT / "systemd" / "publish.toml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]", result.stdout


@pytest.mark.parametrize("text, key, words", [
    ('[mqtt]\nhost = "broker.plant.lan"\n', "mqtt.tls_ca_file", "plain text"),
    ('[mqtt]\nhost = "10.0.0.5"\nport = 1883\n', "mqtt.tls_ca_file", "plain text"),
    ('station = "line 3/cam#1"\n', "station", "one topic level"),
    ('[mqtt]\ntopic_prefix = "plant/inspectd"\n', "mqtt.topic_prefix", "one topic level"),
    ('[mqtt]\ntls_ca_file = "/nonexistent/ca.crt"\n', "mqtt.tls_ca_file", "no such file"),
    ('[mqtt]\ntls_ca_file = "NOT_A_CERTIFICATE"\n', "mqtt.tls_ca_file", "holds no CA certificate"),
    ('[mqtt]\npassword_file = "/nonexistent/password"\n', "mqtt.password_file", "no such file"),
    ('[mqtt]\ntls_cert_file = "/etc/hostname"\n', "mqtt.tls_key_file", "needs both"),
    ('[mqtt]\nport = 70000\n', "mqtt.port", "at most 65535"),
    ('[mqtt]\nkeepalive_s = 1.0\n', "mqtt.keepalive_s", "at least 5"),
    ('[mqtt]\nhots = "localhost"\n', "mqtt.hots", "unknown key"),
    ('first_start = "yesterday"\n', "first_start", "use one of: boot, all, now"),
    ('[metrics]\nlisten = "9811"\n', "metrics.listen", "address:port"),
    ('[metrics]\nlisten = "prometheus.lan:9811"\n', "metrics.listen", "not an IP address"),
    ("[mqtt\n", None, "not valid TOML"),
])
def test_each_configuration_error_is_one_line_and_78(tmp_path: Path, text: str, key: str | None, words: str):
    text = text.replace("NOT_A_CERTIFICATE", str(write(tmp_path, "not a certificate\n")))
    config = tmp_path / "config.toml"
    config.write_text(text)
    for argv in (["--check"], ["--state-dir", str(tmp_path)]):  # the service exits the same way before it connects
        result = cli("publish", "--config", config, *argv)
        assert result.returncode == 78, result
        lines = result.stderr.splitlines()
        assert lines and all(line.startswith(f"inspectd: {config}: ") for line in lines), result.stderr  # one line per problem
        assert any((key is None or f"key {key}:" in line) and words in line for line in lines), lines
        assert len(lines) == (2 if "tls_cert_file" in text else 1), lines  # a lone client certificate: two problems
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("what", ["a FIFO", "/dev/zero"])
def test_a_configuration_that_is_not_a_file_is_refused_before_it_is_read(tmp_path: Path, what: str):
    """The station's bounded reader (settings.read_toml): a FIFO would block the publisher, /dev/zero never ends."""
    config = Path("/dev/zero") if what == "/dev/zero" else tmp_path / "publish.toml"
    if what == "a FIFO":
        os.mkfifo(config)
    result = cli("publish", "--config", config, "--check")
    assert result.returncode == 78 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"inspectd: {config}: ") and "not a configuration file" in result.stderr, result.stderr


def test_plaintext_is_accepted_to_loopback_or_when_allowed(tmp_path: Path):
    for text in ('[mqtt]\nhost = "127.0.0.1"\n', '[mqtt]\nhost = "::1"\n', '[mqtt]\nhost = "localhost"\n',
                 '[mqtt]\nhost = "broker.plant.lan"\nallow_plaintext = true\n'):
        assert load(write(tmp_path, text)).mqtt is not None
    assert not is_loopback("127.0.0.1.nip.io") and not is_loopback("10.0.0.1") and is_loopback("[::1]")


def test_the_password_comes_from_the_credential_when_no_file_is_named(tmp_path: Path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert load(write(tmp_path, "[mqtt]\n")).mqtt.password() == "from-systemd"
    (tmp_path / "own").write_text("own-file\nsecond line ignored\n")
    assert load(write(tmp_path, f'[mqtt]\npassword_file = "{tmp_path / "own"}"\n')).mqtt.password() == "own-file"
    (credentials / "mqtt-password").write_text("")
    assert load(write(tmp_path, "[mqtt]\n")).mqtt.password() is None  # an empty credential: an anonymous broker


# ---------------------------------------------------------------- messages


def test_a_verdict_message_carries_what_the_plant_needs_and_its_key():
    message = record_message(verdict_entry(7, "REJECT"), TOPICS)
    payload = json.loads(message.payload)
    assert message.topic == "inspectd/line3-cam1/verdict" and not message.retain and message.kind == "verdict"
    assert payload["id"] == f"{STATION}/{BOOT}/812/7"
    assert {key: payload[key] for key in ("frame", "verdict", "score", "threshold", "latency_ms", "model", "precision", "image")} == {
        "frame": 7, "verdict": "REJECT", "score": 9.25, "threshold": 6.5, "latency_ms": 21.5, "model": "ab" * 32, "precision": "f16",
        "image": "/var/lib/inspectd/rejects/7.png"}
    assert payload["time"].startswith("2026-") and payload["host"] == "pi-7" and payload["station"] == STATION
    # The same record read again (after a kill) gets the same key; another process's frame 7 does not.
    assert json.loads(record_message(verdict_entry(7, "REJECT"), TOPICS).payload)["id"] == payload["id"]
    assert json.loads(record_message(verdict_entry(7, "REJECT", _PID="813"), TOPICS).payload)["id"] != payload["id"]


@pytest.mark.parametrize("kind, topic", [(RecordKind.FAULT, "fault"), (RecordKind.DRIFT, "drift"), (RecordKind.DRIFT_OVER, "drift"),
                                         (RecordKind.START, "event"), (RecordKind.STOP, "event"), (RecordKind.RELOAD, "event"),
                                         (RecordKind.PRECISION, "event"), (RecordKind.SUMMARY, "summary")])
def test_every_record_kind_has_its_topic(kind: RecordKind, topic: str):
    entry = event_entry(kind, "something happened", monotonic=4242, frames="120", rejects="6", fault="source", drift_sigma="+2.31")
    message = record_message(entry, TOPICS)
    payload = json.loads(message.payload)
    assert message.topic == f"inspectd/{STATION}/{topic}"
    assert payload["kind"] == str(kind) and payload["id"] == f"{STATION}/{BOOT}/812/{kind}@4242"
    assert payload["frames"] == 120 and payload["drift_sigma"] == 2.31 and payload["fault"] == "source"  # figures as numbers


def test_systemd_saying_the_unit_failed_is_an_event_and_stops_the_state():
    entry = {"MESSAGE_ID": "d9b373ed-55a6-4feb-8242-e02dbe79a49c", "MESSAGE": "inspectd.service: Failed with result 'watchdog'.",
             "UNIT": "inspectd.service", "UNIT_RESULT": "watchdog", "_BOOT_ID": BOOT, "_PID": "1", "__MONOTONIC_TIMESTAMP": "99"}
    kind, payload = record_payload(entry, STATION)
    assert kind == "service-failed" and payload["result"] == "watchdog"
    state = StationState()
    state.update(event_entry(RecordKind.START, "started", model="ab" * 32, precision="f32"))
    assert state.state == "judging"
    assert state.update(entry, "inspectd.service") and state.state == "stopped" and "watchdog" in state.reason
    assert not StationState().update({**entry, "UNIT": "other.service"}, "inspectd.service")


def test_the_state_follows_the_records():
    state = StationState()
    steps = [(event_entry(RecordKind.START, "started", model="m1", precision="f16"), "judging"),
             (verdict_entry(1), "judging"),
             (event_entry(RecordKind.FAULT, "archive full", fault="archive"), "judging"),  # no frame goes unjudged for it
             (event_entry(RecordKind.FAULT, "camera gone", fault="source"), "not judging"),
             (event_entry(RecordKind.START, "camera back", recovered="source"), "judging"),
             (event_entry(RecordKind.DRIFT, "drift", drift_sigma="+2.10"), "judging"),
             (event_entry(RecordKind.STOP, "stopped (stopped)"), "stopped")]
    for entry, expected in steps:
        state.update(entry)
        assert state.state == expected, entry
    assert state.model == "m1" and state.precision == "f16" and state.drift and state.drift_sigma == 2.1
    assert state.reason == "stopped (stopped)"


def test_home_assistant_discovery_is_retained_and_points_at_the_topics():
    messages = home_assistant(TOPICS)
    assert len(messages) == 4 and all(m.retain for m in messages)
    configs = {m.topic: json.loads(m.payload) for m in messages}
    reject = configs["homeassistant/binary_sensor/inspectd_line3_cam1/reject/config"]
    assert reject["state_topic"] == TOPICS.verdict and reject["unique_id"] == "inspectd_line3_cam1_reject"
    assert len({c["unique_id"] for c in configs.values()}) == 4


# ---------------------------------------------------------------- position


def test_the_position_is_replaced_whole(tmp_path: Path):
    store = PositionFile(tmp_path / "position.json")
    assert store.load() is None
    store.save(Position(cursor="s=1;i=5", boot=BOOT, pid=812, frame=5))
    store.save(Position(cursor="s=1;i=6", boot=BOOT, pid=812, frame=6, gap_reported=True))
    assert store.load() == Position(cursor="s=1;i=6", boot=BOOT, pid=812, frame=6, gap_reported=True)
    assert [p.name for p in tmp_path.iterdir()] == ["position.json"]  # no temporary left behind
    (tmp_path / "position.json").write_text("{not json")
    with pytest.raises(Exception, match="delete it to start again"):
        store.load()


# ---------------------------------------------------------------- metrics


def test_metrics_count_the_records_and_pass_promtool():
    metrics = Metrics(STATION, "inspectd.service")
    metrics.replay([event_entry(RecordKind.START, "started", model="ab" * 32, precision="f16")])
    for frame in range(1, 11):
        metrics.observe(verdict_entry(frame, "REJECT" if frame % 5 == 0 else "PASS"))
    metrics.observe(event_entry(RecordKind.FAULT, 'a "quoted" \\ fault', fault='we"ird'))
    metrics.observe({**verdict_entry(11), "INSPECTD_SCORE": "nan"})
    text = metrics.render()
    lines = text.splitlines()
    assert 'inspectd_verdicts_total{verdict="PASS"} 8' in lines and 'inspectd_verdicts_total{verdict="REJECT"} 2' in lines
    assert 'inspectd_faults_total{fault="we\\"ird"} 1' in lines and "inspectd_malformed_records_total 1" in lines
    assert 'inspectd_inference_latency_seconds_bucket{le="0.02"} 0' in lines
    assert 'inspectd_inference_latency_seconds_bucket{le="0.03"} 10' in lines and "inspectd_inference_latency_seconds_count 10" in lines
    assert "inspectd_judging 1" in lines and f'inspectd_model_info{{station="{STATION}",model="{"ab" * 32}",precision="f16"}} 1' in lines
    if shutil.which("promtool") is None:
        pytest.skip("promtool not found (apt-get install prometheus): the format was not linted")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# ---------------------------------------------------------------- a fleet's report


def test_a_collectors_records_are_reported_per_station_and_in_total():
    from datetime import datetime

    from inspectd.daemon.cli.report import by_station, station_lines, summarise

    def record(host: str, frame: int, verdict: str) -> dict:
        entry = verdict_entry(frame, verdict)
        return {**entry, "_HOSTNAME": host, "__REALTIME_TIMESTAMP": datetime(2026, 11, 29, 6, frame % 60)}

    records = [record("station-a", n, "REJECT" if n % 4 == 0 else "PASS") for n in range(1, 9)]
    records += [record("station-b", n, "PASS") for n in range(1, 4)]
    records.append({**event_entry(RecordKind.FAULT, "camera gone", fault="source"), "_HOSTNAME": "station-b",
                    "__REALTIME_TIMESTAMP": datetime(2026, 11, 29, 6, 30)})
    stations = by_station(records, None, 3600)
    fleet = summarise(records, None, 3600)
    assert {name: (s["frames"], s["rejects"], s["faults"]) for name, s in stations.items()} == {
        "station-a": (8, 2, {}), "station-b": (3, 0, {"source": 1})}
    assert (fleet["frames"], fleet["rejects"]) == (11, 2)
    lines = station_lines(stations, fleet)
    assert [line.split()[:3] for line in lines[1:]] == [["station-a", "8", "2"], ["station-b", "3", "0"], ["fleet", "total", "11"]]
    assert by_station(records[:8], None, 3600) == {}  # one station: no per-station table
