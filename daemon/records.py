"""The station's journal records, in one shape for everyone: the station's journal output writes them, and
``inspectd report`` and every follower of the journal read them back with the same fields.

Each record kind has a MESSAGE_ID (explained by systemd/inspectd.catalog, ``journalctl -x``); journald
requires UPPER_SNAKE field names. A verdict record:

    >>> record = VerdictRecord(frame=7, verdict="REJECT", score=250.5, threshold=193.16, latency_ms=12.3,
    ...                        model="7137d30699bf" * 5, source="part-7.png", precision="f32")
    >>> record.message()
    'REJECT frame 7 score 250.500 > 193.160 (12.3 ms) part-7.png'
    >>> VerdictRecord.from_entry(record.fields()) == record
    True
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, UTC


class RecordKind(enum.StrEnum):
    """What a record is about; compares and formats as its text."""

    VERDICT = "verdict"
    START = "start"  # also: a part that had failed works again (the source is back, the archive writes again)
    STOP = "stop"
    RELOAD = "reload"
    FAULT = "fault"
    SUMMARY = "summary"
    PRECISION = "precision"  # the model runs at a slower precision than asked: a faster one failed its self-test
    DRIFT = "drift"  # the PASS scores drifted from the model folder's normal scores: a warning, once
    DRIFT_OVER = "drift-over"  # they are back: the drift alarm is over


MESSAGE_IDS: dict[RecordKind, str] = {
    RecordKind.VERDICT: "5a01ba8d9a354266b5189ac90117b557",
    RecordKind.FAULT: "b1a6b1f25a3e4221ab82c0f6673f994f",
    RecordKind.START: "0f12c7ed6efb4275beec27b55c91abde",
    RecordKind.STOP: "4524c69a4ea1475bbf70cdc8b03c4973",
    RecordKind.RELOAD: "960be9cf77f44ea886f0c8ff08625ec6",
    RecordKind.SUMMARY: "b2b7174efc2f4cce9b3c917ef77d620a",
    RecordKind.PRECISION: "7ce843afd9d44cf6a483da1844086b4a",
    RecordKind.DRIFT: "295411a410124cc2b5d65b66b86e769e",
    RecordKind.DRIFT_OVER: "fbf4e0beac2e4907841157c796b34b46",
}
_KINDS = {message_id: kind for kind, message_id in MESSAGE_IDS.items()}
SYSLOG_IDENTIFIER = "inspectd"


def kind_of(entry: Mapping[str, object]) -> RecordKind | None:
    """The record's kind from its MESSAGE_ID (journald may hand it back as a UUID); None for a record not the station's."""
    value = entry.get("MESSAGE_ID")
    return _KINDS.get(str(value).replace("-", "")) if value is not None else None


class RecordError(ValueError):
    """A journal record that does not have the shape its kind promises (a field missing, not a number, not finite)."""


def entry_text(entry: Mapping[str, object], name: str, required: bool = True) -> str | None:
    """A field as text, however the reader handed it back (systemd-python converts some fields: bytes, UUIDs, ints)."""
    value = entry.get(name)
    if value is None or value == "":
        if required:
            raise RecordError(f"has no {name}")
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def entry_number(entry: Mapping[str, object], name: str, kind: type = float, required: bool = True):
    """A field as a finite number (``kind``), None when absent and not ``required``."""
    value = entry_text(entry, name, required)
    if value is None:
        return None
    try:
        converted = kind(value)
    except ValueError:
        raise RecordError(f"{name} is {value!r}, not a number") from None
    if not math.isfinite(converted):
        raise RecordError(f"{name} is {value}, not a finite number")
    return converted


@dataclass(frozen=True)
class Origin:
    """Where and when journald says a record was written: fields it adds itself, which the writer cannot forget or forge."""

    time: datetime | None = None  # when journald received it (__REALTIME_TIMESTAMP)
    boot: str | None = None  # the boot it was written in (_BOOT_ID)
    pid: int | None = None  # the station's process (_PID): frame numbers start again at 1 in each
    host: str | None = None  # the machine's host name (_HOSTNAME): the station, in a fleet's collected journals
    monotonic_us: int | None = None  # microseconds since that boot (__MONOTONIC_TIMESTAMP): the record's place in its boot

    @classmethod
    def of(cls, entry: Mapping[str, object]) -> Origin:
        stamp = entry.get("__REALTIME_TIMESTAMP")
        if isinstance(stamp, (str, int)) and str(stamp).isdigit():  # journalctl -o json gives microseconds as text
            stamp = datetime.fromtimestamp(int(stamp) / 1e6, UTC)
        boot = entry_text(entry, "_BOOT_ID", False)
        pid = entry_text(entry, "_PID", False)
        monotonic = entry.get("__MONOTONIC_TIMESTAMP")
        if isinstance(monotonic, tuple):  # systemd-python: (timedelta, boot id)
            monotonic = monotonic[0]
        if isinstance(monotonic, timedelta):
            monotonic = monotonic // timedelta(microseconds=1)
        return cls(time=stamp if isinstance(stamp, datetime) else None, boot=None if boot is None else boot.replace("-", ""),
                   pid=int(pid) if pid is not None and pid.isdigit() else None, host=entry_text(entry, "_HOSTNAME", False),
                   monotonic_us=int(monotonic) if monotonic is not None and str(monotonic).isdigit() else None)

    def to_json(self) -> dict[str, object]:
        return {"time": self.time.isoformat() if self.time else None, "boot": self.boot, "pid": self.pid, "host": self.host}


@dataclass(frozen=True)
class EventRecord:
    """Any record but a verdict (start, stop, reload, fault, summary, precision, drift, drift-over), read back: its kind,
    its message and its INSPECTD_* fields by their lower-case names (``fault``, ``error``, ``drift_sigma``, ...).

        >>> record = EventRecord.from_entry({"MESSAGE_ID": MESSAGE_IDS[RecordKind.FAULT], "MESSAGE": "camera gone",
        ...                                  "INSPECTD_FAULT": "source", "INSPECTD_ERROR": "SourceFault"})
        >>> record.kind, record.fields["fault"]
        (<RecordKind.FAULT: 'fault'>, 'source')
    """

    kind: RecordKind
    message: str
    fields: dict[str, str]
    origin: Origin = Origin()

    @classmethod
    def from_entry(cls, entry: Mapping[str, object], origin: Origin | None = None) -> EventRecord:
        kind = kind_of(entry)
        if kind is None or kind is RecordKind.VERDICT:
            raise RecordError(f"MESSAGE_ID {entry.get('MESSAGE_ID')!r} is not an event record's")
        fields = {name.removeprefix("INSPECTD_").lower(): entry_text(entry, name) or "" for name in entry if name.startswith("INSPECTD_")}
        return cls(kind=kind, message=entry_text(entry, "MESSAGE", False) or "", fields=fields, origin=origin or Origin.of(entry))

    def to_json(self) -> dict[str, object]:
        """Its fields as JSON values: the counts and figures as numbers, the rest as text."""
        values = {name: _number(value) if name in NUMERIC_FIELDS else value for name, value in self.fields.items()}
        return {"kind": str(self.kind), "message": self.message, **values, **self.origin.to_json()}


NUMERIC_FIELDS = {"frame", "frames", "rejects", "fps", "drift_sigma", "drift_window", "drift_limit", "window_mean", "normal_mean",
                  "normal_std"}


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return text
        return value if math.isfinite(value) else text


@dataclass(frozen=True)
class VerdictRecord:
    frame: int  # the frame's number since the station started (INSPECTD_FRAME)
    verdict: str  # PASS or REJECT (INSPECTD_VERDICT)
    score: float  # raw PaDiM score (INSPECTD_SCORE)
    threshold: float  # the threshold the station applied (INSPECTD_THRESHOLD)
    latency_ms: float  # frame in memory -> verdict (INSPECTD_LATENCY_MS)
    model: str  # sha256 of model.bin (INSPECTD_MODEL)
    source: str  # where the frame came from: a file name, "picamera2#12" (INSPECTD_SOURCE)
    precision: str | None = None  # what OpenVINO ran: f32, f16, bf16 (INSPECTD_PRECISION)
    image: str | None = None  # the archived picture, when there is one (INSPECTD_IMAGE)
    defect_area: int | None = None  # pixels above the pixel threshold, with a minimum defect area (INSPECTD_DEFECT_AREA)
    time: datetime | None = None  # when journald received it: read back only (__REALTIME_TIMESTAMP)
    boot: str | None = None  # the boot it was written in: read back only (_BOOT_ID)
    pid: int | None = None  # the station's process: read back only (_PID); frame numbers start again in each
    host: str | None = None  # the machine that wrote it: read back only (_HOSTNAME), the station in a fleet's journals

    @property
    def rejected(self) -> bool:
        return self.verdict == "REJECT"

    def message(self) -> str:
        relation = ">" if self.score > self.threshold else "<="
        return (f"{self.verdict} frame {self.frame} score {self.score:.3f} {relation} {self.threshold:.3f} ({self.latency_ms:.1f} ms) "
                f"{self.source}")

    def fields(self) -> dict[str, str]:
        """The record's journal fields (MESSAGE, PRIORITY and MESSAGE_ID are the writer's)."""
        written = {"INSPECTD_VERDICT": self.verdict, "INSPECTD_SCORE": f"{self.score:.4f}", "INSPECTD_THRESHOLD": f"{self.threshold:.4f}",
                   "INSPECTD_FRAME": str(self.frame), "INSPECTD_LATENCY_MS": f"{self.latency_ms:.2f}", "INSPECTD_MODEL": self.model,
                   "INSPECTD_SOURCE": self.source}
        optional = {"INSPECTD_PRECISION": self.precision, "INSPECTD_IMAGE": self.image, "INSPECTD_DEFECT_AREA": self.defect_area}
        return written | {name: str(value) for name, value in optional.items() if value is not None}

    @classmethod
    def from_entry(cls, entry: Mapping[str, object], origin: Origin | None = None) -> VerdictRecord:
        """A verdict record read back (systemd-python's reader gives some fields converted, others as text)."""
        verdict = entry_text(entry, "INSPECTD_VERDICT")
        if verdict not in ("PASS", "REJECT"):
            raise RecordError(f"INSPECTD_VERDICT is {verdict!r}")
        origin = origin or Origin.of(entry)
        return cls(frame=entry_number(entry, "INSPECTD_FRAME", int), verdict=verdict, score=entry_number(entry, "INSPECTD_SCORE"),
                   threshold=entry_number(entry, "INSPECTD_THRESHOLD"), latency_ms=entry_number(entry, "INSPECTD_LATENCY_MS"),
                   model=entry_text(entry, "INSPECTD_MODEL"), source=entry_text(entry, "INSPECTD_SOURCE"),
                   precision=entry_text(entry, "INSPECTD_PRECISION", False), image=entry_text(entry, "INSPECTD_IMAGE", False),
                   defect_area=entry_number(entry, "INSPECTD_DEFECT_AREA", int, False), time=origin.time, boot=origin.boot,
                   pid=origin.pid, host=origin.host)

    def to_json(self) -> dict[str, object]:
        """The record as JSON-able values (time as ISO 8601)."""
        values = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        values["time"] = self.time.isoformat() if self.time else None
        return values
