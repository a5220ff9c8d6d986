"""A deployed model folder measured on labelled images, through the station's own runtime.

Image metrics from the raw scores; pixel metrics (AUROC, AUPRO) where masks exist, at the
model's resolution, as anomalib measures them (masks resized nearest, then centre-cropped as
the frames are); counts, rates and F1 at the folder's threshold (anomalous when score >
threshold); latency of the runtime (pre-processing + graph; the file read excluded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.evaluation.dataset import Sample
from inspectd.daemon.evaluation.metrics import Rate, aupro, auroc, confusion, f1_score
from inspectd.daemon.runtime.images import read_image
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.runtime.preprocess import crop_offset, resized_size


@dataclass
class Scored:
    sample: Sample
    score: float
    latency_ms: float
    model_map: np.ndarray | None  # at the model's resolution, kept when the sample has a mask or is good (pixel metrics)
    model_mask: np.ndarray | None  # the ground truth the same way


def score_all(model: Model, samples: list[Sample], progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[list[Scored], list[str]]:
    """Every sample through the runtime; unreadable ones are listed as errors, never scored."""
    with_masks = any(s.mask is not None for s in samples)
    scored, errors = [], []
    for number, sample in enumerate(samples, 1):
        try:
            frame = read_image(sample.path)
            start = time.perf_counter()
            result = model.infer(frame, str(sample.path))
            latency = (time.perf_counter() - start) * 1000.0
        except InspectdError as exc:
            errors.append(str(exc))
            continue
        keep = with_masks and (sample.mask is not None or not sample.anomalous)
        mask = model_mask(sample, frame.shape[:2], model) if keep else None
        scored.append(Scored(sample, result.score, latency, result.model_map if keep else None, mask))
        progress(number, len(samples))
    return scored, errors


def model_mask(sample: Sample, frame_size: tuple[int, int], model: Model) -> np.ndarray:
    """The sample's mask (zeros for a good part) resized and cropped as its frame was, at the model's resolution."""
    spec = model.folder.preprocessing
    height, width = resized_size(*frame_size, spec.resize)
    if sample.mask is None:
        return np.zeros((spec.input_height, spec.input_width), dtype=bool)
    mask = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InspectdError("not a readable mask", file=sample.mask, fix="replace it (8-bit PNG, 255 = defect)")
    mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    if spec.center_crop is not None:
        top, left = crop_offset(height, width, spec.center_crop)
        mask = mask[top : top + spec.center_crop[0], left : left + spec.center_crop[1]]
    return mask > 127


def summarise(scored: list[Scored], threshold: float) -> dict:
    """Every figure `inspectd evaluate` prints, as one JSON-able dict."""
    scores = np.array([s.score for s in scored])
    labels = np.array([s.sample.anomalous for s in scored])
    counts = confusion(scores, labels, threshold)
    good, defective = int((~labels).sum()), int(labels.sum())
    pixel = [s for s in scored if s.model_map is not None]
    kinds = sorted({s.sample.kind for s in scored if s.sample.anomalous})
    latencies = np.array([s.latency_ms for s in scored])
    summary = {
        "images": len(scored), "good": good, "defective": defective,
        "image_auroc": auroc(scores, labels),
        "pixel_auroc": auroc(np.stack([s.model_map for s in pixel]), np.stack([s.model_mask for s in pixel])) if pixel else None,
        "aupro": aupro([s.model_map for s in pixel], [s.model_mask for s in pixel]) if pixel else None,
        "pixel_images": len(pixel),
        "threshold": threshold,
        "confusion": counts,
        "f1": f1_score(counts),
        "false_reject_rate": _rate(Rate(counts["false_reject"], good)),
        "catch_rate": _rate(Rate(counts["true_reject"], defective)),
        "per_defect": {kind: _rate(Rate(sum(s.score > threshold for s in scored if s.sample.kind == kind),
                                        sum(s.sample.kind == kind for s in scored))) for kind in kinds},
        "latency_ms": {"median": float(np.median(latencies)), "p95": float(np.percentile(latencies, 95))} if scored else None,
    }
    return summary


def _rate(rate: Rate) -> dict:
    low, high = rate.interval
    return {"count": rate.count, "of": rate.total, "rate": rate.value, "ci95": [low, high], "text": str(rate)}


def text(summary: dict, model_dir: str, data_dir: str) -> list[str]:
    """The summary as a person reads it."""
    number = lambda value: "n/a" if value is None else f"{value:.4f}"  # noqa: E731
    counts = summary["confusion"]
    lines = [
        f"model {model_dir} on {data_dir}: {summary['images']} images ({summary['good']} good, {summary['defective']} defective)",
        f"image AUROC        {number(summary['image_auroc'])}",
        f"pixel AUROC        {number(summary['pixel_auroc'])}" + (f" ({summary['pixel_images']} images with masks or good)" if summary["pixel_images"] else " (no masks)"),
        f"PRO (AUPRO@0.3)    {number(summary['aupro'])}",
        f"threshold          {summary['threshold']:.4f} (anomalous when score > threshold)",
        f"false rejects      {summary['false_reject_rate']['text']} of good parts",
        f"caught             {summary['catch_rate']['text']} of defective parts",
        *(f"  {kind:16} {rate['text']}" for kind, rate in summary["per_defect"].items()),
        f"F1                 {summary['f1']:.4f}",
        f"confusion          {counts['true_reject']} caught, {counts['false_accept']} missed, {counts['false_reject']} good rejected, "
        f"{counts['true_pass']} good passed",
    ]
    if summary["latency_ms"]:
        lines.append(f"latency            median {summary['latency_ms']['median']:.1f} ms, p95 {summary['latency_ms']['p95']:.1f} ms "
                     f"(pre-processing + graph at {summary.get('precision', '?')}; file read excluded)")
    return lines
