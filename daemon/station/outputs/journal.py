"""One structured journald record per verdict (and per service event), or one stderr line each
where there is no journal (a developer laptop).

Fields (journald requires UPPER_SNAKE names): MESSAGE, PRIORITY, MESSAGE_ID, SYSLOG_IDENTIFIER,
INSPECTD_VERDICT, INSPECTD_SCORE, INSPECTD_THRESHOLD, INSPECTD_FRAME, INSPECTD_LATENCY_MS,
INSPECTD_MODEL, INSPECTD_IMAGE, INSPECTD_SOURCE, INSPECTD_DEFECT_AREA; summaries add
INSPECTD_FRAMES, INSPECTD_REJECTS, INSPECTD_FPS. The MESSAGE_IDs are explained by
systemd/inspectd.catalog (``journalctl -x``).

    journalctl -u inspectd INSPECTD_VERDICT=REJECT -o json
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from inspectd.daemon.station.config import JournalConfig
from inspectd.daemon.station.verdict import Verdict

MESSAGE_IDS = {
    "verdict": "5a01ba8d9a354266b5189ac90117b557",
    "fault": "b1a6b1f25a3e4221ab82c0f6673f994f",
    "start": "0f12c7ed6efb4275beec27b55c91abde",
    "stop": "4524c69a4ea1475bbf70cdc8b03c4973",
    "reload": "960be9cf77f44ea886f0c8ff08625ec6",
    "summary": "b2b7174efc2f4cce9b3c917ef77d620a",
    "precision": "7ce843afd9d44cf6a483da1844086b4a",
}
PRIORITY = {"REJECT": 4, "PASS": 6, "fault": 3, "start": 5, "stop": 5, "reload": 5, "summary": 6, "precision": 4}
JOURNAL_SOCKET = "/run/systemd/journal/socket"


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
    def __init__(self, config: JournalConfig, send: Callable[..., None] | None = None, stream=None, to_stderr: bool = False) -> None:
        self.config = config
        self.send = None if to_stderr else (send or journal_sender())
        self.stream = stream or sys.stderr
        self.frames = self.rejects = 0
        self.window_start = time.monotonic()
        self.window_frames = 0

    def verdict(self, verdict: Verdict) -> None:
        self.frames += 1
        self.window_frames += 1
        self.rejects += verdict.rejected
        if self.config.log == "all" or verdict.rejected:
            fields = {
                "INSPECTD_VERDICT": verdict.verdict,
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
            self._emit("verdict", message, PRIORITY[verdict.verdict], fields)
        if time.monotonic() - self.window_start >= self.config.summary_interval_s:
            self.summary()

    def summary(self) -> None:
        now = time.monotonic()
        fps = self.window_frames / max(now - self.window_start, 1e-9)
        self._emit("summary", f"{self.frames} frames, {self.rejects} rejects, {fps:.1f} frames/s", PRIORITY["summary"],
                   {"INSPECTD_FRAMES": str(self.frames), "INSPECTD_REJECTS": str(self.rejects), "INSPECTD_FPS": f"{fps:.2f}"})
        self.window_start, self.window_frames = now, 0

    def event(self, kind: str, message: str, **fields: object) -> None:
        self._emit(kind, message, PRIORITY.get(kind, 5), {f"INSPECTD_{k.upper()}": str(v) for k, v in fields.items()})

    def _emit(self, kind: str, message: str, priority: int, fields: dict[str, str]) -> None:
        if self.send is not None:
            self.send(message, PRIORITY=str(priority), MESSAGE_ID=MESSAGE_IDS[kind], SYSLOG_IDENTIFIER="inspectd", **fields)
        else:
            extra = " ".join(f"{k.removeprefix('INSPECTD_').lower()}={v}" for k, v in fields.items() if k != "INSPECTD_MODEL")
            print(f"inspectd: {message}" + (f"  [{extra}]" if kind != "verdict" and extra else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self.frames and self.config.log == "rejects":
            self.summary()
