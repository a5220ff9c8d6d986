"""The shift so far and the station's state, folded from its journal records (``records``: one shape for everyone).

A pure fold: ``Shift.add(entry)`` takes one journal entry as systemd-python's reader gives it (or the same
fields as text); nothing here reads a file or a clock, so every rule is tested on plain records.

What it keeps: counts since the shift started (frames, rejects, faults by kind), the last verdicts and
faults, the PASS scores' shift from the model folder's normal scores (over the shift and over the
station's drift window, as ``inspectd report`` and the station's drift watch compute them), the drift
alarm the station raised, and the state of the ready line with its reason, by the station's own rule
(``health``): the line runs while the station is started, its source is up, it judges frames (fewer than
UNJUDGED_IN_A_ROW frames in a row without a verdict) and the line itself works.

    >>> from datetime import datetime
    >>> from inspectd.daemon.records import MESSAGE_IDS, RecordKind
    >>> shift = Shift(start=datetime(2026, 1, 1, 6))
    >>> shift.add({"MESSAGE_ID": MESSAGE_IDS[RecordKind.START], "MESSAGE": "started", "__REALTIME_TIMESTAMP": datetime(2026, 1, 1, 7)})
    >>> shift.ready()["running"]
    True
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from inspectd.daemon.records import RecordError, RecordKind, VerdictRecord, kind_of
from inspectd.daemon.web.station_facts import DRIFT_WINDOW, UNJUDGED_IN_A_ROW

LAST_VERDICTS = 30
LAST_FAULTS = 12
IMAGES_KEPT = 2000  # archived frames of the shift whose records are kept for the gallery (score, time)


def text(entry: Mapping[str, object], name: str) -> str:
    value = entry.get(name)
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def stamp(entry: Mapping[str, object]) -> datetime | None:
    """When journald received it, as a naive local time (systemd-python 235 gives an aware one; the page's shifts are local times)."""
    value = entry.get("__REALTIME_TIMESTAMP")
    if not isinstance(value, datetime):
        return None
    return value.astimezone().replace(tzinfo=None) if value.tzinfo is not None else value


def iso(when: datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when else None


@dataclass
class Normal:
    """The model folder's normal scores (inspectd.json normal_scores): what a shift is measured against."""

    mean: float
    std: float


@dataclass
class Shift:
    start: datetime  # records before it change the state, not the counts
    normal: Normal | None = None
    drift_window: int = DRIFT_WINDOW
    frames: int = 0
    rejects: int = 0
    faults: Counter = field(default_factory=Counter)
    malformed: int = 0
    verdicts: deque = field(default_factory=lambda: deque(maxlen=LAST_VERDICTS))  # VerdictRecord, newest last
    recent_faults: deque = field(default_factory=lambda: deque(maxlen=LAST_FAULTS))
    images: dict = field(default_factory=dict)  # archived file name -> VerdictRecord (the gallery's score and time)
    pass_sum: float = 0.0
    pass_count: int = 0
    window: deque = field(default=None)  # type: ignore[assignment]
    summary_frames: int = 0  # with [journal] log = "rejects": frames the station's summaries counted in the shift
    # the station's state
    running: bool | None = None  # None: no start or stop record seen
    since: datetime | None = None  # when it started or stopped
    stop_reason: str = ""
    source_down: str = ""  # the fault record's message while the source is down
    source_down_since: datetime | None = None
    unjudged: int = 0  # frames in a row that got no verdict
    unjudged_reason: str = ""
    health_failing: str = ""
    model: str = ""  # the model the station runs (start, reload and verdict records)
    precision: str = ""
    threshold: float | None = None
    fallback: str = ""  # why a faster precision was refused
    drift_alarm: dict | None = None  # the station's drift record while its alarm lasts
    last_record: datetime | None = None
    last_verdict_at: datetime | None = None
    _run_frames: int = field(default=0, repr=False)  # the last summary's count in the current run
    _run_frames_at_shift: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.window is None:
            self.window = deque(maxlen=self.drift_window)

    def add(self, entry: Mapping[str, object]) -> VerdictRecord | None:
        """One journal record of the station; returns the verdict when it was one."""
        kind = kind_of(entry)
        when = stamp(entry)
        counted = when is None or when >= self.start
        self.last_record = when or self.last_record
        if kind is RecordKind.VERDICT or (kind is None and "INSPECTD_VERDICT" in entry):
            try:
                record = VerdictRecord.from_entry(entry)
            except RecordError:
                self.malformed += counted
                return None
            self._verdict(record, counted)
            return record
        message = text(entry, "MESSAGE")
        if kind is RecordKind.START:
            recovered = text(entry, "INSPECTD_RECOVERED")
            if recovered == "source":
                self.source_down, self.source_down_since = "", None
            elif recovered == "health":
                self.health_failing = ""
            elif not recovered:
                self._started(entry, when)
        elif kind is RecordKind.RELOAD:
            self._model(entry)
        elif kind is RecordKind.STOP:
            self.running, self.since, self.stop_reason = False, when, message
            self._run_frames_at_shift, self._run_frames = None, 0
        elif kind is RecordKind.FAULT:
            where = text(entry, "INSPECTD_FAULT") or "other"
            if counted:
                self.faults[where] += 1
                self.recent_faults.append({"time": iso(when), "kind": where, "message": message})
            if where == "source":
                if not self.source_down:
                    self.source_down_since = when
                self.source_down = message
            elif where in ("frame", "inference"):
                self.unjudged += 1
                self.unjudged_reason = message
            elif where == "health":
                self.health_failing = message
        elif kind is RecordKind.PRECISION:
            self.fallback = message
        elif kind is RecordKind.DRIFT:
            self.drift_alarm = {"time": iso(when), "message": message, "sigma": _number(entry, "INSPECTD_DRIFT_SIGMA")}
        elif kind is RecordKind.DRIFT_OVER:
            self.drift_alarm = None
        elif kind is RecordKind.SUMMARY:
            self._summary(entry, counted)
        return None

    def _started(self, entry: Mapping[str, object], when: datetime | None) -> None:
        self.running, self.since, self.stop_reason = True, when, ""
        self.source_down, self.source_down_since, self.unjudged, self.health_failing = "", None, 0, ""
        self.fallback, self.drift_alarm = "", None
        self._run_frames_at_shift, self._run_frames = (0 if when is None or when >= self.start else None), 0
        self._model(entry)

    def _model(self, entry: Mapping[str, object]) -> None:
        self.model = text(entry, "INSPECTD_MODEL") or self.model
        self.precision = text(entry, "INSPECTD_PRECISION") or self.precision

    def _verdict(self, record: VerdictRecord, counted: bool) -> None:
        self.unjudged = 0
        self.running = True if self.running is None else self.running
        self.model, self.threshold = record.model, record.threshold
        self.precision = record.precision or self.precision
        self.last_verdict_at = record.time or self.last_verdict_at
        if not counted:
            return
        self.frames += 1
        self.rejects += record.rejected
        self.verdicts.append(record)
        if record.image:
            name = record.image.rsplit("/", 1)[-1]
            self.images[name] = record
            if len(self.images) > IMAGES_KEPT:
                self.images.pop(next(iter(self.images)))
        if not record.rejected:
            self.pass_sum += record.score
            self.pass_count += 1
            self.window.append(record.score)

    def _summary(self, entry: Mapping[str, object], counted: bool) -> None:
        frames = _number(entry, "INSPECTD_FRAMES")
        if frames is None:
            return
        if self._run_frames_at_shift is None and counted:  # the first summary of the shift in a run started before it
            self._run_frames_at_shift = self._run_frames
        self._run_frames = int(frames)
        if counted and self._run_frames_at_shift is not None:
            self.summary_frames = max(self.summary_frames, self._run_frames - self._run_frames_at_shift)

    # ------------------------------------------------------------------ what the page shows

    def shift_sigmas(self, scores_mean: float | None) -> float | None:
        if scores_mean is None or self.normal is None or not self.normal.std > 0:
            return None
        return (scores_mean - self.normal.mean) / self.normal.std

    def drift(self) -> dict[str, object]:
        shift_mean = self.pass_sum / self.pass_count if self.pass_count else None
        window_mean = math.fsum(self.window) / len(self.window) if len(self.window) == self.window.maxlen else None
        return {"shift_mean": shift_mean, "shift_sigmas": self.shift_sigmas(shift_mean), "window": self.window.maxlen,
                "window_filled": len(self.window), "window_sigmas": self.shift_sigmas(window_mean), "alarm": self.drift_alarm,
                "normal": None if self.normal is None else {"mean": self.normal.mean, "std": self.normal.std}}

    def ready(self) -> dict[str, object]:
        """The ready line's state by the station's rule, and why."""
        if self.running is None:
            return {"running": False, "state": "unknown", "why": "no start or stop record of the station in the journal read"}
        if not self.running:
            return {"running": False, "state": "stopped", "since": iso(self.since),
                    "why": f"the station is not running: {self.stop_reason or 'stopped'}"}
        if self.source_down:
            return {"running": False, "state": "source down", "since": iso(self.source_down_since),
                    "why": f"the source is down and being reopened: {self.source_down}"}
        if self.unjudged >= UNJUDGED_IN_A_ROW:
            return {"running": False, "state": "not judging",
                    "why": f"the last {self.unjudged} frames got no verdict: {self.unjudged_reason}"}
        if self.health_failing:
            return {"running": False, "state": "line failing", "why": f"the ready line itself fails: {self.health_failing}"}
        return {"running": True, "state": "running", "since": iso(self.since),
                "why": "the station is started, its source is up and it judges frames"}

    def to_json(self) -> dict[str, object]:
        frames = max(self.frames, self.summary_frames)
        return {
            "start": iso(self.start), "frames": frames, "rejects": self.rejects,
            "reject_rate": self.rejects / frames if frames else None, "faults": dict(self.faults), "malformed": self.malformed,
            "from_summaries": self.summary_frames > self.frames, "verdicts": [r.to_json() for r in reversed(self.verdicts)],
            "recent_faults": list(reversed(self.recent_faults)), "drift": self.drift(), "ready": self.ready(),
            "model": self.model, "precision": self.precision, "threshold": self.threshold, "fallback": self.fallback,
            "last_record": iso(self.last_record), "last_verdict": iso(self.last_verdict_at),
        }


def _number(entry: Mapping[str, object], name: str) -> float | None:
    try:
        value = float(text(entry, name))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
