"""What the decision says about a frame, and the record every output receives for it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspectd.daemon.runtime.model import Inspection


class Verdict(enum.StrEnum):
    """Compares and formats as its text: ``Verdict.REJECT == "REJECT"``, as journald's INSPECTD_VERDICT."""

    PASS = "PASS"
    REJECT = "REJECT"


@dataclass
class FrameVerdict:
    frame: int  # monotonic frame number since the daemon started (INSPECTD_FRAME)
    source: str  # where the frame came from, e.g. a file name or "picamera2#12" (INSPECTD_SOURCE)
    verdict: Verdict
    score: float  # raw PaDiM score
    threshold: float  # the threshold applied (the model's or the configured override)
    latency_ms: float  # frame in memory -> decision
    model_id: str  # sha256 of model.bin (INSPECTD_MODEL)
    defect_area: int | None  # pixels above the pixel threshold, when a minimum area is configured
    inspection: Inspection = field(repr=False)  # the model's own result (its map; its threshold may not be the one applied)
    pixels: np.ndarray = field(repr=False)  # the BGR frame, for the reject archive
    archived: Path | None = None  # set by the archive output, read by the journal output

    @property
    def rejected(self) -> bool:
        return self.verdict is Verdict.REJECT
