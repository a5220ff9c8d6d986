"""What archiving a frame costs on this disk (seconds, or bytes of room), learnt from the frames written.

A frame costs a part per frame (two files created, flushed and renamed; PNG headers and the
filesystem's blocks) and a part per byte of its pixels (encoding and writing them). Measured per
byte alone, a 1x1 frame's fixed cost divided by its 3 bytes would make the next camera frame
look like hours of writing (issue 17: 11,424 s estimated, rejects refused on an idle disk).
Each measurement moves each part in proportion to its share of what was predicted: a tiny frame
teaches the part per frame, a large one the part per byte; a running mean (in log space) of the
last few.

    >>> cost = Estimate(per_frame=0.01, per_byte=200e-9)
    >>> cost.measured(3, 0.02)                      # a 1x1 frame took 20 ms: the fixed part grows
    >>> round(cost.of(1, 640 * 480 * 3), 2)         # a VGA frame: still well under a second
    0.2
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WEIGHT = 0.5  # of each new measurement in the running mean


@dataclass
class Estimate:
    per_frame: float
    per_byte: float

    def of(self, frames: int, nbytes: int) -> float:
        """The cost of ``frames`` frames holding ``nbytes`` bytes of pixels in all."""
        return frames * self.per_frame + nbytes * self.per_byte

    def measured(self, nbytes: int, value: float) -> None:
        """One frame of ``nbytes`` bytes of pixels cost ``value``."""
        predicted = self.of(1, nbytes)
        if not (math.isfinite(value) and predicted > 0):
            return
        ratio = max(value, predicted * 1e-6) / predicted
        share = self.per_frame / predicted  # the fixed part's share of the prediction
        self.per_frame *= ratio ** (WEIGHT * share)
        self.per_byte *= ratio ** (WEIGHT * (1 - share))
