"""Detection metrics in numpy, defined as torchmetrics and anomalib define them (tests compare to 1e-6).

- ``auroc``: area under the ROC curve (image scores, or every pixel of the maps against the masks);
  ties count half, as the trapezoid over torchmetrics' curve does.
- ``aupro``: anomalib's AUPRO: the per-region overlap averaged over the ground truth's connected
  regions (8-connectivity, as OpenCV labels them), against the false-positive rate over all
  background pixels, integrated up to ``fpr_limit`` (0.3) and divided by it.
- ``rate``: a proportion with its 95% Wilson score interval, for false-reject and catch rates.

    >>> round(auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True])), 4)
    0.75
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Z_95 = 1.959963984540054
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it; the Debian package bundles numpy 1.26


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Probability that a positive outscores a negative (ties half); None without both classes."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.concatenate((starts[1:], [ordered.size]))
    average = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def region_labels(masks: list[np.ndarray]) -> np.ndarray:
    """Connected regions of every mask, numbered 1..N across all of them (0: background), flattened."""
    labelled, offset = [], 0
    for mask in masks:
        count, labels = cv2.connectedComponents((np.asarray(mask) > 0).astype(np.uint8), connectivity=8)
        labels = labels.astype(np.int64)
        labels[labels > 0] += offset
        offset += count - 1
        labelled.append(labels.ravel())
    return np.concatenate(labelled) if labelled else np.zeros(0, dtype=np.int64)


def aupro(maps: list[np.ndarray], masks: list[np.ndarray], fpr_limit: float = 0.3) -> float | None:
    """anomalib's AUPRO of anomaly maps against masks of the same sizes; None without any defect region."""
    labels = region_labels(masks)
    scores = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps]).astype(np.float64)
    background = labels == 0
    sizes = np.bincount(labels)
    regions = int((sizes[1:] > 0).sum())
    if not background.any() or regions == 0:
        return None
    overlap = np.zeros(scores.size)
    overlap[~background] = 1.0 / sizes[labels[~background]]
    order = np.argsort(-scores, kind="mergesort")
    ordered = scores[order]
    fpr = np.minimum(np.cumsum(background[order]) / background.sum(), 1.0)
    pro = np.minimum(np.cumsum(overlap[order]) / regions, 1.0)
    last_of_tie = np.concatenate((ordered[:-1] != ordered[1:], [True]))
    fpr = np.concatenate(([0.0], fpr[last_of_tie]))
    pro = np.concatenate(([0.0], pro[last_of_tie]))
    inside = np.flatnonzero(fpr <= fpr_limit)
    end = int(inside[-1])
    if fpr[end] < fpr_limit and end + 1 < fpr.size:
        limit_pro = pro[end] + (pro[end + 1] - pro[end]) * (fpr_limit - fpr[end]) / (fpr[end + 1] - fpr[end])
        fpr, pro = np.append(fpr[: end + 1], fpr_limit), np.append(pro[: end + 1], limit_pro)
    else:
        fpr, pro = fpr[: end + 1], pro[: end + 1]
    return float(_trapezoid(pro, fpr) / fpr[-1])


@dataclass(frozen=True)
class Rate:
    """``count`` of ``total``, with its 95% Wilson score interval."""

    count: int
    total: int

    @property
    def value(self) -> float:
        return self.count / self.total if self.total else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        if not self.total:
            return (0.0, 1.0)
        n, p = self.total, self.count / self.total
        centre = (p + Z_95**2 / (2 * n)) / (1 + Z_95**2 / n)
        half = Z_95 * math.sqrt(p * (1 - p) / n + Z_95**2 / (4 * n * n)) / (1 + Z_95**2 / n)
        return (max(0.0, centre - half), min(1.0, centre + half))

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.value * 100:.1f}% ({self.count}/{self.total}; 95% CI {low * 100:.1f}-{high * 100:.1f}%)"


def confusion(rejected: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """Counts of the verdicts (True: REJECT) against the labels (True: defective)."""
    predicted = np.asarray(rejected, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    return {"true_reject": int((predicted & labels).sum()), "false_reject": int((predicted & ~labels).sum()),
            "false_accept": int((~predicted & labels).sum()), "true_pass": int((~predicted & ~labels).sum())}


def f1_score(counts: dict[str, int]) -> float:
    found = 2 * counts["true_reject"]
    total = found + counts["false_reject"] + counts["false_accept"]
    return found / total if total else 0.0
