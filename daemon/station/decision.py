"""Score -> PASS/REJECT: the threshold, an optional minimum defect area, optional N-of-M confirmation."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from inspectd.daemon.runtime.model import Inspection
from inspectd.daemon.station.config import DecisionConfig
from inspectd.daemon.station.verdict import Verdict


class Decided(NamedTuple):
    verdict: Verdict
    defect_area: int | None  # pixels above the pixel threshold, when a minimum area is configured


class Decision:
    """
        >>> decide = Decision(threshold=14.5, config=DecisionConfig(min_defect_area=50))
        >>> verdict, area = decide(inspection)   # doctest: +SKIP
    """

    def __init__(self, threshold: float, config: DecisionConfig) -> None:
        self.threshold = threshold
        self.min_area = config.min_defect_area
        self.pixel_threshold = config.pixel_threshold if config.pixel_threshold is not None else threshold
        self.needed, window = (config.confirm or (1, 1))
        self.recent: deque[bool] = deque(maxlen=window)

    def __call__(self, inspection: Inspection) -> Decided:
        anomalous = inspection.score > self.threshold
        area = None
        if self.min_area:
            # Area in the frame's own pixels, so the setting does not depend on the model size.
            area = int(np.count_nonzero(inspection.anomaly_map() > self.pixel_threshold))
            anomalous = anomalous and area >= self.min_area
        self.recent.append(anomalous)
        return Decided(Verdict.REJECT if sum(self.recent) >= self.needed else Verdict.PASS, area)
