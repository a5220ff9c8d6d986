"""What the plant receives: each journal record as one MQTT message, the station's state, and Home Assistant's
discovery, under one topic tree per station (README, "The plant: MQTT").

    <prefix>/<station>/verdict        every verdict record (JSON)
    <prefix>/<station>/fault          every fault record
    <prefix>/<station>/drift          drift alarms and their end (kind "drift", "drift-over")
    <prefix>/<station>/event          start, stop, reload, precision fallback, the station unit failing, publishing gaps
    <prefix>/<station>/summary        the station's periodic counts (frames, rejects, frames/s)
    <prefix>/<station>/state          retained: judging | not judging | stopped | unknown, with the reason
    <prefix>/<station>/availability   retained: online | offline (offline is the connection's last will)

Every record message carries ``id``, its idempotency key: the same record always gets the same id, so a consumer
drops the duplicates that at-least-once delivery allows. A verdict's is ``<station>/<boot>/<pid>/<frame>`` (frame
numbers start again at 1 in each station process, hence the pid); another record's ``<station>/<boot>/<pid>/<kind>@<µs
since boot>``.

    >>> from inspectd.daemon.records import MESSAGE_IDS, RecordKind
    >>> topics = Topics("inspectd", "line3-cam1")
    >>> entry = {"MESSAGE_ID": MESSAGE_IDS[RecordKind.VERDICT], "INSPECTD_VERDICT": "REJECT", "INSPECTD_FRAME": "7",
    ...          "INSPECTD_SCORE": "250.5", "INSPECTD_THRESHOLD": "193.16", "INSPECTD_LATENCY_MS": "12.3",
    ...          "INSPECTD_MODEL": "7137d3", "INSPECTD_SOURCE": "part-7.png", "_BOOT_ID": "b00t", "_PID": "812"}
    >>> message = record_message(entry, topics)
    >>> message.topic, json.loads(message.payload)["id"]
    ('inspectd/line3-cam1/verdict', 'line3-cam1/b00t/812/7')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from inspectd.daemon.records import EventRecord, Origin, RecordKind, VerdictRecord, entry_text, kind_of

# systemd's own record when a unit fails (SD_MESSAGE_UNIT_FAILURE_RESULT, "Failed with result '...'"), with UNIT=<unit>:
# a station killed, or stopped by its watchdog, writes no stop record of its own.
UNIT_FAILED_ID = "d9b373ed55a64feb8242e02dbe79a49c"
UNIT_FAILED = "service-failed"

TOPIC_OF: dict[str, str] = {
    RecordKind.VERDICT: "verdict", RecordKind.FAULT: "fault", RecordKind.DRIFT: "drift", RecordKind.DRIFT_OVER: "drift",
    RecordKind.START: "event", RecordKind.STOP: "event", RecordKind.RELOAD: "event", RecordKind.PRECISION: "event",
    RecordKind.SUMMARY: "summary", UNIT_FAILED: "event",
}
JUDGING, NOT_JUDGING, STOPPED, UNKNOWN = "judging", "not judging", "stopped", "unknown"
STOPPING_FAULTS = {"source", "config", "internal"}  # a fault after which no frame is judged until a start record


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False
    kind: str | None = None  # the record's kind, for counting; None for the publisher's own messages


@dataclass(frozen=True)
class Topics:
    prefix: str
    station: str

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return f"{self.prefix}/{self.station}/{name}"


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_kind(entry: Mapping[str, object], unit: str | None = None) -> str | None:
    """The record's kind: one of the station's, ``service-failed`` for systemd's record of ``unit`` failing, else None."""
    kind = kind_of(entry)
    if kind is not None:
        return kind
    if str(entry.get("MESSAGE_ID", "")).replace("-", "") == UNIT_FAILED_ID and (unit is None or entry_text(entry, "UNIT", False) == unit):
        return UNIT_FAILED
    return None


def record_payload(entry: Mapping[str, object], station: str, origin: Origin | None = None) -> tuple[str, dict]:
    """The record's kind and its JSON payload with its idempotency key; RecordError when a verdict is malformed."""
    kind = record_kind(entry)
    origin = origin or Origin.of(entry)
    prefix = f"{station}/{origin.boot}/{origin.pid}"
    if kind == RecordKind.VERDICT:
        verdict = VerdictRecord.from_entry(entry, origin)
        return kind, {"id": f"{prefix}/{verdict.frame}", "station": station, **verdict.to_json()}
    if kind == UNIT_FAILED:
        body = {"kind": UNIT_FAILED, "message": entry_text(entry, "MESSAGE", False) or "", "unit": entry_text(entry, "UNIT", False),
                "result": entry_text(entry, "UNIT_RESULT", False), **origin.to_json()}
    else:
        body = EventRecord.from_entry(entry, origin).to_json()
    return str(kind), {"id": f"{prefix}/{kind}@{origin.monotonic_us}", "station": station, **body}


def record_message(entry: Mapping[str, object], topics: Topics, origin: Origin | None = None) -> Message:
    kind, payload = record_payload(entry, topics.station, origin)
    return Message(getattr(topics, TOPIC_OF[kind]), dumps(payload), kind=kind)


@dataclass
class StationState:
    """What the station is doing, from its records (a Sparkplug birth in spirit: re-sent on every connection)."""

    state: str = UNKNOWN
    reason: str = "no station record read yet"
    since: str | None = None
    model: str | None = None
    precision: str | None = None
    drift: bool = False
    drift_sigma: float | None = None

    def update(self, entry: Mapping[str, object], unit: str | None = None) -> bool:
        """Takes one record into account; whether the state (not only the drift figure) changed."""
        kind = record_kind(entry, unit)
        if kind is None or kind in (RecordKind.VERDICT, RecordKind.SUMMARY, RecordKind.PRECISION):
            if kind == RecordKind.PRECISION:
                self.precision = entry_text(entry, "INSPECTD_PRECISION", False) or self.precision
            return False
        before = asdict(self)
        message = entry_text(entry, "MESSAGE", False) or ""
        when = Origin.of(entry).time
        moment = when.isoformat() if when else None
        if kind in (RecordKind.START, RecordKind.RELOAD):
            self._set(JUDGING, message, moment)
            self.model = entry_text(entry, "INSPECTD_MODEL", False) or self.model
            self.precision = entry_text(entry, "INSPECTD_PRECISION", False) or self.precision
            if kind == RecordKind.START and not entry.get("INSPECTD_RECOVERED"):
                self.drift, self.drift_sigma = False, None  # a new station process watches from an empty window
        elif kind == RecordKind.FAULT and entry_text(entry, "INSPECTD_FAULT", False) in STOPPING_FAULTS:
            self._set(NOT_JUDGING, message, moment)
        elif kind in (RecordKind.STOP, UNIT_FAILED):
            self._set(STOPPED, message, moment)
        elif kind in (RecordKind.DRIFT, RecordKind.DRIFT_OVER):
            self.drift = kind == RecordKind.DRIFT
            sigma = entry_text(entry, "INSPECTD_DRIFT_SIGMA", False)
            try:
                self.drift_sigma = float(sigma) if sigma is not None else self.drift_sigma
            except ValueError:
                pass
        return asdict(self) != before

    def _set(self, state: str, reason: str, since: str | None) -> None:
        if state != self.state:
            self.since = since
        self.state, self.reason = state, reason

    def to_json(self, station: str) -> dict[str, object]:
        return {"station": station, **asdict(self)}


def state_message(state: StationState, topics: Topics) -> Message:
    return Message(topics.state, dumps(state.to_json(topics.station)), retain=True)


def gap_message(topics: Topics, gap: dict[str, object]) -> Message:
    return Message(topics.event, dumps({"kind": "gap", "station": topics.station, **gap}), kind="gap")


def home_assistant(topics: Topics, prefix: str = "homeassistant") -> list[Message]:
    """Home Assistant's MQTT discovery (retained): a reject binary sensor, the score, the reject rate, the state."""
    node = f"inspectd_{topics.station}".replace(".", "_").replace("-", "_")
    device = {"identifiers": [node], "name": f"inspectd {topics.station}", "manufacturer": "inspectd",
              "model": "visual inspection station"}
    common = {"availability_topic": topics.availability, "device": device}
    entities = [
        ("binary_sensor", "reject", {"name": "Reject", "state_topic": topics.verdict, "device_class": "problem",
                                     "value_template": "{{ 'ON' if value_json.verdict == 'REJECT' else 'OFF' }}"}),
        ("sensor", "score", {"name": "Score", "state_topic": topics.verdict, "state_class": "measurement",
                             "value_template": "{{ value_json.score }}"}),
        ("sensor", "reject_rate", {"name": "Reject rate", "state_topic": topics.summary, "unit_of_measurement": "%",
                                   "state_class": "measurement",
                                   "value_template": "{{ (100 * value_json.rejects / value_json.frames) | round(2) "
                                                     "if value_json.frames else 0 }}"}),
        ("sensor", "state", {"name": "State", "state_topic": topics.state, "value_template": "{{ value_json.state }}"}),
    ]
    return [Message(f"{prefix}/{component}/{node}/{name}/config", dumps({"unique_id": f"{node}_{name}", **common, **config}), retain=True)
            for component, name, config in entities]
