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
from datetime import datetime


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
    def from_entry(cls, entry: Mapping[str, object]) -> VerdictRecord:
        """A verdict record read back (systemd-python's reader gives some fields converted, others as text)."""
        def text(name: str, required: bool = True) -> str | None:
            value = entry.get(name)
            if value is None or value == "":
                if required:
                    raise RecordError(f"has no {name}")
                return None
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

        def number(name: str, kind: type = float, required: bool = True):
            value = text(name, required)
            if value is None:
                return None
            try:
                converted = kind(value)
            except ValueError:
                raise RecordError(f"{name} is {value!r}, not a number") from None
            if not math.isfinite(converted):
                raise RecordError(f"{name} is {value}, not a finite number")
            return converted

        verdict = text("INSPECTD_VERDICT")
        if verdict not in ("PASS", "REJECT"):
            raise RecordError(f"INSPECTD_VERDICT is {verdict!r}")
        stamp = entry.get("__REALTIME_TIMESTAMP")
        boot = entry.get("_BOOT_ID")
        return cls(frame=number("INSPECTD_FRAME", int), verdict=verdict, score=number("INSPECTD_SCORE"),
                   threshold=number("INSPECTD_THRESHOLD"), latency_ms=number("INSPECTD_LATENCY_MS"), model=text("INSPECTD_MODEL"),
                   source=text("INSPECTD_SOURCE"), precision=text("INSPECTD_PRECISION", False), image=text("INSPECTD_IMAGE", False),
                   defect_area=number("INSPECTD_DEFECT_AREA", int, False), time=stamp if isinstance(stamp, datetime) else None,
                   boot=None if boot is None else str(boot).replace("-", ""))

    def to_json(self) -> dict[str, object]:
        """The record as JSON-able values (time as ISO 8601)."""
        values = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        values["time"] = self.time.isoformat() if self.time else None
        return values
