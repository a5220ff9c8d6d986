"""Thresholds for production: chosen for a target false-reject rate on held-out good parts.

The F1-optimal threshold balances errors on the test images, which is rarely what a line
wants: with 20 good and 50 defective boards it rejected 11 good ones of 20. A line states the
false-reject rate it can afford (1% by default) and wants to know what that catches.

- With enough good images (n >= 1/target) the threshold is empirical: midway between the
  k-th and (k+1)-th highest good score, k = floor(target * n), so at most k of the n are rejected.
- With fewer, n images cannot show a rate below 1/n: the threshold comes from a normal fit of
  the good scores (mean + z * std for the target's quantile), never below the highest good
  score, and the choice says so (``supported`` is False, ``warning`` the line to print).

The scores are what the decision rule compares with the threshold (``runtime.decision``: the
raw score, or with a minimum defect area ``Rule.critical_score``): the station's own rule.

    >>> choice = for_false_reject_rate(np.arange(200.0), 0.01)
    >>> choice.method, choice.value, choice.false_reject.count
    ('empirical', 197.5, 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from inspectd.daemon import schema
from inspectd.daemon.evaluation.metrics import Rate, auroc

DEFAULT_FALSE_REJECT_RATE = 0.01


@dataclass(frozen=True)
class Choice:
    value: float
    method: str  # empirical | normal-fit | f1
    target: float | None  # the false-reject rate asked for
    false_reject: Rate  # of the good images, at ``value``
    catch: Rate | None  # of the defective images, where there are some
    auroc: float | None
    warning: str | None  # why the sample cannot support the target, when it cannot

    @property
    def supported(self) -> bool:
        return self.warning is None

    @property
    def f1(self) -> float | None:
        """F1 at ``value`` on the images it was chosen on; None without defective images."""
        if self.catch is None:
            return None
        caught, missed = self.catch.count, self.catch.total - self.catch.count
        return 2 * caught / (2 * caught + self.false_reject.count + missed) if caught else 0.0

    def record(self, note: str | None = None) -> schema.Threshold:
        """The model folder's threshold entry for this choice (``inspectd.json`` threshold): export and calibrate write it."""
        counts = {"normal_images": self.false_reject.total, "anomalous_images": self.catch.total if self.catch else 0}
        if self.method == "f1":
            return schema.Threshold(value=self.value, source="calibration-f1", f1=self.f1, note=note, **counts)
        return schema.Threshold(value=self.value, source="calibration-frr", target_false_reject_rate=self.target, method=self.method,
                                note=note, **counts)

    def lines(self) -> list[str]:
        """What train and calibrate print."""
        good = self.false_reject.total
        if self.method == "f1":
            how = f"F1-optimal on {good} good and {self.catch.total if self.catch else 0} defective images"
        elif self.method == "empirical":
            how = f"for a false-reject rate of {self.target:.2%} on {good} good images"
        else:
            how = f"for a false-reject rate of {self.target:.2%}, from a normal fit of {good} good images"
        lines = [f"threshold {self.value:.4f} ({how})",
                 f"  false rejects  {self.false_reject} of the good images"]
        if self.catch is not None:
            lines.append(f"  caught         {self.catch} of the defective images")
        if self.auroc is not None:
            lines.append(f"  image AUROC    {self.auroc:.4f}")
        if self.warning:
            lines.append(f"  warning: {self.warning}")
        return lines


def for_false_reject_rate(good: np.ndarray, target: float = DEFAULT_FALSE_REJECT_RATE, defective: np.ndarray | None = None) -> Choice:
    good = np.sort(np.asarray(good, dtype=np.float64))[::-1]
    if good.size == 0:
        raise ValueError("no good scores")
    if not 0 < target < 1:
        raise ValueError(f"target false-reject rate {target} is not in (0, 1)")
    warning = None
    if good.size * target >= 1:
        k = int(math.floor(target * good.size))
        value, method = float((good[k - 1] + good[k]) / 2.0) if k < good.size else float(good[-1] - 1.0), "empirical"
    else:
        std = float(good.std(ddof=1)) if good.size > 1 else 0.0
        fit = float(good.mean()) + NormalDist().inv_cdf(1.0 - target) * std
        gap = max(std * 0.1, abs(float(good[0])) * 1e-3, 1e-6)
        value, method = max(fit, float(good[0]) + gap), "normal-fit"
        needed = int(math.ceil(1.0 / target))
        warning = (f"{good.size} good images cannot show a false-reject rate below {1 / good.size:.1%}; the {target:.2%} target rests on "
                   f"a normal fit of their scores: collect at least {needed} good images (`inspectd collect`) to measure it")
    return _choice(value, method, target, good, defective, warning)


def f1_optimal(good: np.ndarray, defective: np.ndarray) -> Choice:
    """The threshold with the best F1, midway between two scores (no image sits on it)."""
    scores = np.concatenate([good, defective])
    labels = np.concatenate([np.zeros(len(good), bool), np.ones(len(defective), bool)])
    distinct = np.unique(scores)
    candidates = np.concatenate(([distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2.0))
    best, best_f1 = float(candidates[0]), -1.0
    for threshold in candidates:
        predicted = scores > threshold
        f1 = 2.0 * np.sum(predicted & labels) / (np.sum(predicted) + np.sum(labels))
        if f1 > best_f1:
            best, best_f1 = float(threshold), float(f1)
    return _choice(best, "f1", None, np.asarray(good), np.asarray(defective), None)


def _choice(value: float, method: str, target: float | None, good: np.ndarray, defective: np.ndarray | None, warning: str | None) -> Choice:
    has_defects = defective is not None and len(defective) > 0
    catch = Rate(int((np.asarray(defective) > value).sum()), len(defective)) if has_defects else None
    area = auroc(np.concatenate([good, defective]), np.concatenate([np.zeros(len(good), bool), np.ones(len(defective), bool)])) if has_defects else None
    return Choice(value, method, target, Rate(int((good > value).sum()), len(good)), catch, area, warning)
