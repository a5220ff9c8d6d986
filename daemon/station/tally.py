"""What the station has done so far: counts and the last verdict, as ``systemctl status`` shows them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from inspectd.daemon.station.verdict import FrameVerdict


@dataclass
class Tally:
    frames: int = 0
    rejects: int = 0
    last: FrameVerdict | None = None
    source_down: bool = False  # between a SourceDown and a SourceBack
    troubles: dict[str, str] = field(default_factory=dict)  # a part that is failing -> what STATUS says about it
    started: float = field(default_factory=time.monotonic)

    def count(self, verdict: FrameVerdict) -> None:
        self.frames += 1
        self.rejects += verdict.rejected
        self.last = verdict

    def status(self, now: float) -> str:
        rate = self.frames / max(now - self.started, 1e-9)
        last = self.last
        tail = f", last {last.verdict} {last.score:.2f}/{last.threshold:.2f}" if last else ""
        state = "source down, retrying" if self.source_down else "inspecting"
        troubles = "".join(f"; {text}" for text in self.troubles.values())
        return f"{state}: {rate:.1f} frames/s, {self.frames} frames, {self.rejects} rejects{tail}{troubles}"

    def trouble(self, part: str, text: str) -> None:
        """``part`` is failing (STATUS says ``text``), or works again (``text`` empty)."""
        if text:
            self.troubles[part] = text
        else:
            self.troubles.pop(part, None)
