"""``[journal]``: one structured journald record per verdict (and per service event), or one
stderr line each where there is no journal (a developer laptop).

Fields (journald requires UPPER_SNAKE names): MESSAGE, PRIORITY, MESSAGE_ID, SYSLOG_IDENTIFIER; a
verdict's are ``records.VerdictRecord``'s (the one shape its readers get back); summaries add
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

from inspectd.daemon.records import MESSAGE_IDS, RecordKind
from inspectd.daemon.station.outputs.interface import EventKind, Notice, Output, OutputConfig, printable
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.verdict import FrameVerdict, Verdict

VERDICT_RECORD = RecordKind.VERDICT
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
        self.own_stream = None if stream is not None else private_stderr()
        self.stream = stream or self.own_stream or sys.stderr
        self.frames = self.rejects = 0
        self.window_start = time.monotonic()
        self.window_frames = 0
        self.closed = False

    def verdict(self, verdict: FrameVerdict) -> None:
        self.frames += 1
        self.window_frames += 1
        self.rejects += verdict.rejected
        if self.config.log == "all" or verdict.rejected:
            record = verdict.record()
            self._emit(VERDICT_RECORD, record.message(), PRIORITY[verdict.verdict], record.fields())
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
        if self.own_stream is not None:
            self.own_stream.close()


def private_stderr() -> TextIO | None:
    """The process's stderr through a descriptor of its own, or None when sys.stderr is not descriptor 2 (a test's).

    ``read_image`` points descriptor 2 elsewhere for an instant while libjpeg decodes (its warnings have no other
    channel); a record written through descriptor 2 meanwhile, by the loop's thread, would land there: lost, or taken
    for a warning about the frame being decoded.
    """
    try:
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return None
        sys.stderr.flush()
        return os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    except (AttributeError, OSError, ValueError):
        return None
