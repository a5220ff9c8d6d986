"""What the station has done so far: counts and the last verdict, as ``systemctl status`` shows them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from inspectd.daemon.station.verdict import FrameVerdict

# Frames in a row that got no verdict (unreadable, or refused by the model: a colour camera on a gray
# model) before the station counts as not judging: the ready line stops, as for a source that is down.
# One bad file among good ones is a fault record; a station that judges nothing must not look healthy.
UNJUDGED_IN_A_ROW = 3


@dataclass
class Tally:
    frames: int = 0
    rejects: int = 0
    last: FrameVerdict | None = None
    source_down: bool = False  # between a SourceDown and a SourceBack
    unjudged_in_a_row: int = 0  # frames since the last verdict that could not be judged
    troubles: dict[str, str] = field(default_factory=dict)  # a part that is failing -> what STATUS says about it
    started: float = field(default_factory=time.monotonic)

    def count(self, verdict: FrameVerdict) -> None:
        self.frames += 1
        self.rejects += verdict.rejected
        self.last = verdict
        self.unjudged_in_a_row = 0

    def not_judged(self) -> None:
        """A frame came but got no verdict (its fault record says why)."""
        self.unjudged_in_a_row += 1

    @property
    def judging(self) -> bool:
        return not self.source_down and self.unjudged_in_a_row < UNJUDGED_IN_A_ROW

    def status(self, now: float) -> str:
        rate = self.frames / max(now - self.started, 1e-9)
        last = self.last
        tail = f", last {last.verdict} {last.score:.2f}/{last.threshold:.2f}" if last else ""
        if self.source_down:
            state = "source down, retrying"
        elif not self.judging:
            state = f"NOT JUDGING (the last {self.unjudged_in_a_row} frames got no verdict; see the fault records)"
        else:
            state = "inspecting"
        troubles = "".join(f"; {text}" for text in self.troubles.values())
        return f"{state}: {rate:.1f} frames/s, {self.frames} frames, {self.rejects} rejects{tail}{troubles}"

    def trouble(self, part: str, text: str) -> None:
        """``part`` is failing (STATUS says ``text``), or works again (``text`` empty)."""
        if text:
            self.troubles[part] = text
        else:
            self.troubles.pop(part, None)
