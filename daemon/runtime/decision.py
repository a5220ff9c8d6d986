"""The one decision rule: a frame's score and anomaly map in, a verdict out.

Every place that calls a part good or bad uses it: the station, ``infer``, ``evaluate``,
``calibrate``, the heatmap's label and export's verification. So the rates ``evaluate`` and
``calibrate`` print are the station's, whatever its configuration sets.

A frame is **anomalous** when its score (the raw PaDiM score, the map's maximum) is above the
threshold and, with a minimum defect area, when at least that many pixels of the frame's map
are above the pixel threshold (the threshold itself unless one is set). A part is **REJECT**ed
when at least N of the last M frames were anomalous (``confirm``; without it, N = M = 1).

    >>> rule = Rule(threshold=14.5, min_defect_area=3)
    >>> judge = rule.judge()
    >>> heat = np.zeros((4, 4), np.float32); heat[0, :2] = 20.0
    >>> judge(20.0, heat)
    Decided(verdict=<Verdict.PASS: 'PASS'>, anomalous=False, defect_area=2)
    >>> heat[1, 0] = 15.0
    >>> judge(20.0, heat).verdict
    <Verdict.REJECT: 'REJECT'>
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

AnomalyMap = np.ndarray | Callable[[], np.ndarray]  # at the frame's resolution; a callable is only called when the area matters


class Verdict(enum.StrEnum):
    PASS = "PASS"
    REJECT = "REJECT"


class Decided(NamedTuple):
    verdict: Verdict  # the part's, after confirmation
    anomalous: bool  # this frame's, before confirmation
    defect_area: int | None  # pixels above the pixel threshold, when a minimum area is set


@dataclass(frozen=True)
class Rule:
    threshold: float  # raw PaDiM score
    pixel_threshold: float | None = None  # a pixel counts towards the defect area above this; None: the threshold
    min_defect_area: int = 0  # pixels of the frame's map above the pixel threshold needed; 0: off
    confirm: tuple[int, int] | None = None  # (N, M): REJECT when N of the last M frames are anomalous

    @property
    def area_threshold(self) -> float:
        return self.threshold if self.pixel_threshold is None else self.pixel_threshold

    @property
    def per_frame(self) -> bool:
        """Each frame decides alone (no confirmation): a rate per image is a rate per part."""
        return self.confirm is None or self.confirm == (1, 1)

    def anomalous(self, score: float, anomaly_map: AnomalyMap | None = None) -> tuple[bool, int | None]:
        """This frame's call and, with a minimum area, its defect area."""
        above = bool(score > self.threshold)
        if not self.min_defect_area:
            return above, None
        if anomaly_map is None:
            raise ValueError("a minimum defect area needs the frame's anomaly map")
        heat = anomaly_map() if callable(anomaly_map) else anomaly_map
        area = int(np.count_nonzero(heat > self.area_threshold))
        return above and area >= self.min_defect_area, area

    def critical_score(self, score: float, anomaly_map: AnomalyMap | None = None) -> float:
        """The threshold below which this frame is anomalous under the rule, the others kept: ``anomalous(...)`` is
        ``critical_score(...) > threshold`` for every threshold. A threshold is chosen on these (``calibrate``).

        Without a minimum area it is the score. With one and the pixel threshold following the threshold, it is the
        lower of the score and the frame's ``min_defect_area``-th highest pixel; with a fixed pixel threshold, the
        score, or 0 when too few pixels are above it (a threshold is above 0: none rejects that frame)."""
        if not self.min_defect_area:
            return float(score)
        heat = np.asarray(anomaly_map() if callable(anomaly_map) else anomaly_map).reshape(-1)
        if self.pixel_threshold is not None:
            return float(score) if np.count_nonzero(heat > self.pixel_threshold) >= self.min_defect_area else 0.0
        if heat.size < self.min_defect_area:
            return 0.0
        kth_highest = float(np.partition(heat, heat.size - self.min_defect_area)[heat.size - self.min_defect_area])
        return max(0.0, min(float(score), kth_highest))

    def judge(self) -> Judge:
        """A judge for one stream of frames (it keeps the confirmation window)."""
        return Judge(self)

    def describe(self) -> str:
        """The rule in words, for summaries: what ``evaluate`` and ``calibrate`` measured."""
        parts = [f"score > {self.threshold:.4f}"]
        if self.min_defect_area:
            parts.append(f"at least {self.min_defect_area} pixels above {self.area_threshold:.4f}")
        if not self.per_frame:
            assert self.confirm is not None
            parts.append(f"REJECT when {self.confirm[0]} of the last {self.confirm[1]} frames are anomalous")
        return ", ".join(parts)


class Judge:
    """The rule over a stream of frames, in order. Not thread-safe: one per inspection loop."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.needed, window = rule.confirm or (1, 1)
        self.recent: deque[bool] = deque(maxlen=window)

    def __call__(self, score: float, anomaly_map: AnomalyMap | None = None) -> Decided:
        anomalous, area = self.rule.anomalous(score, anomaly_map)
        self.recent.append(anomalous)
        return Decided(Verdict.REJECT if sum(self.recent) >= self.needed else Verdict.PASS, anomalous, area)
