"""The record every output receives for a judged frame: the verdict with what it was judged on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspectd.daemon.records import VerdictRecord
from inspectd.daemon.runtime.decision import Rule, Verdict
from inspectd.daemon.runtime.model import Inspection

__all__ = ["FrameVerdict", "Verdict"]


@dataclass
class FrameVerdict:
    frame: int  # monotonic frame number since the daemon started (INSPECTD_FRAME)
    source: str  # where the frame came from, e.g. a file name or "picamera2#12" (INSPECTD_SOURCE)
    verdict: Verdict
    score: float  # raw PaDiM score
    rule: Rule  # the decision rule applied (the model folder's threshold or the configured override, area, confirmation)
    latency_ms: float  # frame in memory -> decision
    model_id: str  # sha256 of model.bin (INSPECTD_MODEL)
    precision: str  # what OpenVINO ran
    defect_area: int | None  # pixels above the pixel threshold, when a minimum area is configured
    inspection: Inspection = field(repr=False)  # the model's result: its map
    pixels: np.ndarray = field(repr=False)  # the BGR frame, for the reject archive
    archived: Path | None = None  # set by the archive output, read by the journal output

    @property
    def rejected(self) -> bool:
        return self.verdict is Verdict.REJECT

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    def record(self) -> VerdictRecord:
        """The journal record for it, in the shape every reader of the journal gets back."""
        return VerdictRecord(frame=self.frame, verdict=str(self.verdict), score=self.score, threshold=self.threshold,
                             latency_ms=self.latency_ms, model=self.model_id, source=self.source, precision=self.precision,
                             image=None if self.archived is None else str(self.archived), defect_area=self.defect_area)
