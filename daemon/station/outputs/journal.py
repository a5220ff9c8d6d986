"""``[journal]``: one structured journald record per verdict (and per service event), or one
stderr line each where there is no journal (a developer laptop).

Fields (journald requires UPPER_SNAKE names): MESSAGE, PRIORITY, MESSAGE_ID, SYSLOG_IDENTIFIER,
INSPECTD_VERDICT, INSPECTD_SCORE, INSPECTD_THRESHOLD, INSPECTD_FRAME, INSPECTD_LATENCY_MS,
INSPECTD_MODEL, INSPECTD_IMAGE, INSPECTD_SOURCE, INSPECTD_DEFECT_AREA; summaries add
INSPECTD_FRAMES, INSPECTD_REJECTS, INSPECTD_FPS; faults add INSPECTD_FAULT (where) and
INSPECTD_ERROR (the exception's type); drift records add INSPECTD_DRIFT_SIGMA, INSPECTD_DRIFT_WINDOW,
INSPECTD_DRIFT_LIMIT, INSPECTD_WINDOW_MEAN, INSPECTD_NORMAL_MEAN, INSPECTD_NORMAL_STD. The MESSAGE_IDs are explained by
systemd/inspectd.catalog (``journalctl -x``).

Every MESSAGE and field value is sent as one line of valid UTF-8 (``printable``): a file
name that is not UTF-8, holds a newline or is thousands of characters long is recorded
escaped (``\xff``, ``\x0a``) and cut, never refused by journald's client.

    journalctl -u inspectd INSPECTD_VERDICT=REJECT -o json
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from inspectd.daemon.station.outputs.interface import EventKind, Notice, Output, OutputConfig, printable
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.verdict import FrameVerdict, Verdict

VERDICT_RECORD = "verdict"
MESSAGE_IDS: dict[str, str] = {
    VERDICT_RECORD: "5a01ba8d9a354266b5189ac90117b557",
    EventKind.FAULT: "b1a6b1f25a3e4221ab82c0f6673f994f",
    EventKind.START: "0f12c7ed6efb4275beec27b55c91abde",
    EventKind.STOP: "4524c69a4ea1475bbf70cdc8b03c4973",
    EventKind.RELOAD: "960be9cf77f44ea886f0c8ff08625ec6",
    EventKind.SUMMARY: "b2b7174efc2f4cce9b3c917ef77d620a",
    EventKind.PRECISION: "7ce843afd9d44cf6a483da1844086b4a",
    EventKind.DRIFT: "295411a410124cc2b5d65b66b86e769e",
    EventKind.DRIFT_OVER: "fbf4e0beac2e4907841157c796b34b46",
}
PRIORITY: dict[str, int] = {
    Verdict.REJECT: 4, Verdict.PASS: 6, EventKind.FAULT: 3, EventKind.START: 5, EventKind.STOP: 5, EventKind.RELOAD: 5,
    EventKind.SUMMARY: 6, EventKind.PRECISION: 4, EventKind.DRIFT: 4, EventKind.DRIFT_OVER: 5,
}
JOURNAL_SOCKET = "/run/systemd/journal/socket"
MESSAGE_CHARS = 2000
FIELD_CHARS = 4096


@dataclass
class JournalConfig(OutputConfig):
    log: str = setting("all", choices=("all", "rejects"))  # rejects: rejects plus a summary every summary_interval_s
    summary_interval_s: float = setting(60.0, above=0, fix="seconds between summaries, e.g. 60")

    def open(self, on_fault: Callable[[Notice], None]) -> Output:
        return JournalOutput(self)


def journal_sender() -> Callable[..., None] | None:
    """systemd-python's journal.send when there is a journal to send to, else None."""
    if not os.path.exists(JOURNAL_SOCKET):
        return None
    try:
        from systemd import journal
    except ImportError:
        return None
    return journal.send


class JournalOutput:
    name = "journal"

    def __init__(self, config: JournalConfig, send: Callable[..., None] | None = None, stream: TextIO | None = None,
                 to_stderr: bool = False) -> None:
        self.config = config
        self.send = None if to_stderr else (send or journal_sender())
        self.stream = stream or sys.stderr
        self.frames = self.rejects = 0
        self.window_start = time.monotonic()
        self.window_frames = 0
        self.closed = False

    def verdict(self, verdict: FrameVerdict) -> None:
        self.frames += 1
        self.window_frames += 1
        self.rejects += verdict.rejected
        if self.config.log == "all" or verdict.rejected:
            fields = {
                "INSPECTD_VERDICT": str(verdict.verdict),
                "INSPECTD_SCORE": f"{verdict.score:.4f}",
                "INSPECTD_THRESHOLD": f"{verdict.threshold:.4f}",
                "INSPECTD_FRAME": str(verdict.frame),
                "INSPECTD_LATENCY_MS": f"{verdict.latency_ms:.2f}",
                "INSPECTD_MODEL": verdict.model_id,
                "INSPECTD_SOURCE": verdict.source,
            }
            if verdict.archived is not None:
                fields["INSPECTD_IMAGE"] = str(verdict.archived)
            if verdict.defect_area is not None:
                fields["INSPECTD_DEFECT_AREA"] = str(verdict.defect_area)
            relation = ">" if verdict.score > verdict.threshold else "<="
            message = (f"{verdict.verdict} frame {verdict.frame} score {verdict.score:.3f} {relation} {verdict.threshold:.3f} "
                       f"({verdict.latency_ms:.1f} ms) {verdict.source}")
            self._emit(VERDICT_RECORD, message, PRIORITY[verdict.verdict], fields)
        if time.monotonic() - self.window_start >= self.config.summary_interval_s:
            self.summary()

    def summary(self) -> None:
        now = time.monotonic()
        fps = self.window_frames / max(now - self.window_start, 1e-9)
        self._emit(EventKind.SUMMARY, f"{self.frames} frames, {self.rejects} rejects, {fps:.1f} frames/s", PRIORITY[EventKind.SUMMARY],
                   {"INSPECTD_FRAMES": str(self.frames), "INSPECTD_REJECTS": str(self.rejects), "INSPECTD_FPS": f"{fps:.2f}"})
        self.window_start, self.window_frames = now, 0

    def event(self, kind: EventKind, message: str, **fields: object) -> None:
        self._emit(kind, message, PRIORITY[kind], {f"INSPECTD_{k.upper()}": str(v) for k, v in fields.items()})

    def _emit(self, kind: str, message: str, priority: int, fields: dict[str, str]) -> None:
        """One record; if journald refuses it, the same line goes to stderr and the error is raised (a fault record)."""
        message = printable(message, MESSAGE_CHARS)
        fields = {name: printable(value, FIELD_CHARS) for name, value in fields.items()}
        if self.send is not None:
            try:
                self.send(message, PRIORITY=str(priority), MESSAGE_ID=MESSAGE_IDS[kind], SYSLOG_IDENTIFIER="inspectd", **fields)
                return
            except Exception:
                self._print(kind, message, fields)
                raise
        self._print(kind, message, fields)

    def _print(self, kind: str, message: str, fields: dict[str, str]) -> None:
        extra = " ".join(f"{k.removeprefix('INSPECTD_').lower()}={v}" for k, v in fields.items() if k != "INSPECTD_MODEL")
        print(f"inspectd: {message}" + (f"  [{extra}]" if kind != VERDICT_RECORD and extra else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.frames and self.config.log == "rejects":
            self.summary()
