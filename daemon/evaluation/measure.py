"""A deployed model folder measured on labelled images, through the station's own runtime and decision rule.

Image metrics from the raw scores; pixel metrics (AUROC, AUPRO) where masks exist, at the
model's resolution, as anomalib measures them (masks resized nearest, then centre-cropped as
the frames are); counts, rates and F1 of the verdicts the rule gives (``runtime.decision``: the
station's threshold, minimum defect area and confirmation, the images judged in the order
listed, as the station would judge them replayed in that order); latency of the runtime
(pre-processing + graph; the file read excluded).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.evaluation.dataset import Sample
from inspectd.daemon.evaluation.metrics import Rate, aupro, auroc, confusion, f1_score
from inspectd.daemon.runtime.decision import Decided, Rule, Verdict
from inspectd.daemon.runtime.images import read_image
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.runtime.preprocess import crop_offset, resized_size


@dataclass
class Scored:
    sample: Sample
    score: float
    decided: Decided  # the rule's verdict, in the order the samples were judged
    critical: float  # the threshold below which the rule calls it anomalous (Rule.critical_score): what calibrate chooses on
    latency_ms: float
    model_map: np.ndarray | None  # at the model's resolution, kept when the sample has a mask or is good (pixel metrics)
    model_mask: np.ndarray | None  # the ground truth the same way


def score_all(model: Model, samples: list[Sample], rule: Rule | None = None,
              progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[list[Scored], list[str]]:
    """Every sample through the runtime and the rule (default: the folder's own); unreadable ones are listed as errors,
    never scored."""
    rule = rule or model.rule()
    judge = rule.judge()
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
        heat = functools.cache(result.anomaly_map)  # the frame's map, made once and only if the rule looks at it
        keep = with_masks and (sample.mask is not None or not sample.anomalous)
        mask = model_mask(sample, frame.shape[:2], model) if keep else None
        scored.append(Scored(sample, result.score, judge(result.score, heat), rule.critical_score(result.score, heat), latency,
                             result.model_map if keep else None, mask))
        progress(number, len(samples))
    return scored, errors


def model_mask(sample: Sample, frame_size: tuple[int, int], model: Model) -> np.ndarray:
    """The sample's mask (zeros for a good part) resized and cropped as its frame was, at the model's resolution."""
    spec = model.folder.preprocessing
    height, width = resized_size(*frame_size, spec.resize)
    if sample.mask is None:
        return np.zeros((spec.input_height, spec.input_width), dtype=bool)
    mask = read_image(sample.mask)  # bounded as every frame is: a mask declaring 32000x32000 is refused from its header
    if mask.ndim == 3:
        mask = cv2.cvtColor(mask, cv2.COLOR_BGR2GRAY)
    mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    if spec.center_crop is not None:
        top, left = crop_offset(height, width, spec.center_crop)
        mask = mask[top : top + spec.center_crop[0], left : left + spec.center_crop[1]]
    return mask > 127


def summarise(scored: list[Scored], rule: Rule, roles: list[str] | None = None) -> dict:
    """Every figure `inspectd evaluate` prints, as one JSON-able dict (None where a figure is undefined).

    ``roles`` is each image's part in the model folder (``evaluation.roles.role_of``): the figures are measured on the
    images that played neither (or whose part is not recorded); where there are none of a kind (good or defective),
    on all of that kind, and the figure is listed in ``in_sample``."""
    from inspectd.daemon.evaluation.roles import NEITHER, UNKNOWN

    roles = roles or [UNKNOWN] * len(scored)
    held = np.array([role in (NEITHER, UNKNOWN) for role in roles], dtype=bool)
    labels = np.array([s.sample.anomalous for s in scored], dtype=bool)
    in_sample = []
    used = np.zeros(len(scored), dtype=bool)
    for kind, name in ((False, "false_reject_rate"), (True, "catch_rate")):
        of_kind = labels == kind
        if (of_kind & held).any():
            used |= of_kind & held
        elif of_kind.any():
            used |= of_kind
            in_sample.append(name)
    summary = _figures([s for s, keep in zip(scored, used) if keep], rule)
    summary.update(
        images=len(scored), good=int((~labels).sum()), defective=int(labels.sum()),
        measured_on={"images": int(used.sum()), "good": int((used & ~labels).sum()), "defective": int((used & labels).sum())},
        roles={role: roles.count(role) for role in ("fit", "threshold", "chose", NEITHER, UNKNOWN)},
        in_sample=in_sample,
        latency_ms={"median": float(np.median(latencies)), "p95": float(np.percentile(latencies, 95))}
        if (latencies := np.array([s.latency_ms for s in scored])).size else None,
        verdicts=[{"image": str(s.sample.path), "kind": s.sample.kind, "verdict": str(s.decided.verdict), "score": s.score,
                   "defect_area": s.decided.defect_area, "role": role} for s, role in zip(scored, roles)],
    )
    return summary


def _figures(scored: list[Scored], rule: Rule) -> dict:
    """The image and pixel metrics and the rule's rates over ``scored``."""
    scores = np.array([s.score for s in scored])
    labels = np.array([s.sample.anomalous for s in scored], dtype=bool)
    rejected = np.array([s.decided.verdict is Verdict.REJECT for s in scored], dtype=bool)
    good, defective = int((~labels).sum()), int(labels.sum())
    pixel = [s for s in scored if s.model_map is not None]
    kinds = sorted({s.sample.kind for s in scored if s.sample.anomalous})
    summary = {
        "image_auroc": finite(auroc(scores, labels)) if good and defective else None,
        "pixel_auroc": finite(auroc(np.stack([s.model_map for s in pixel]), np.stack([s.model_mask for s in pixel]))) if pixel else None,
        "aupro": finite(aupro([s.model_map for s in pixel], [s.model_mask for s in pixel])) if pixel else None,
        "pixel_images": len(pixel),
        "threshold": rule.threshold,
        "rule": rule.describe(),
        "rates_per_part": rule.per_frame,
        "confusion": None, "f1": None, "false_reject_rate": None, "catch_rate": None, "per_defect": {},
    }
    if rule.per_frame:  # with confirmation a verdict spans several frames: a rate per image is no part's rate
        counts = confusion(rejected, labels)
        summary.update(confusion=counts, f1=f1_score(counts) if defective else None,
                       false_reject_rate=_rate(Rate(counts["false_reject"], good)), catch_rate=_rate(Rate(counts["true_reject"], defective)),
                       per_defect={kind: _rate(Rate(int(rejected[[s.sample.kind == kind for s in scored]].sum()),
                                                    sum(s.sample.kind == kind for s in scored))) for kind in kinds})
    return summary


def json_safe(value):
    """``value`` with every non-finite float as None: ``evaluate --json`` is always valid JSON."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _rate(rate: Rate) -> dict | None:
    if not rate.total:
        return None
    low, high = rate.interval
    return {"count": rate.count, "of": rate.total, "rate": rate.value, "ci95": [low, high], "text": str(rate)}


_IN_SAMPLE = {"false_reject_rate": "every good image here fitted the model or set its threshold",
              "catch_rate": "every defective image here set the threshold or chose the model"}


def describe_roles(counts: dict) -> str:
    from inspectd.daemon.evaluation.roles import describe

    return describe([role for role, count in counts.items() for _ in range(count)])


def text(summary: dict, model_dir: str, data_dir: str) -> list[str]:
    """The summary as a person reads it."""
    number = lambda value: "n/a" if value is None else f"{value:.4f}"  # noqa: E731
    rate = lambda value: "n/a (no such images)" if value is None else value["text"]  # noqa: E731
    counts = summary["confusion"]
    measured = summary["measured_on"]
    in_sample = summary["in_sample"]
    mark = lambda name: f" (in-sample: {_IN_SAMPLE[name]})" if name in in_sample else ""  # noqa: E731
    lines = [
        f"model {model_dir} on {data_dir}: {summary['images']} images ({summary['good']} good, {summary['defective']} defective)",
        f"roles              {describe_roles(summary['roles'])}",
        f"measured on        {measured['images']} images ({measured['good']} good, {measured['defective']} defective)"
        + ("" if measured["images"] == summary["images"] else ": the others played a part in the model; their figures would flatter it"),
        f"image AUROC        {number(summary['image_auroc'])}{' (in-sample)' if in_sample else ''}",
        f"pixel AUROC        {number(summary['pixel_auroc'])}" + (f" ({summary['pixel_images']} images with masks or good)" if summary["pixel_images"] else " (no masks)"),
        f"PRO (AUPRO@0.3)    {number(summary['aupro'])}",
        f"decides            {summary['rule']}",
    ]
    if counts is None:
        lines.append("rates              none per image: a verdict spans several frames (decision.confirm), so a part's rate depends on "
                     "how many frames each part gives; the verdicts are in --json, judged in this order")
    else:
        lines += [
            f"false rejects      {rate(summary['false_reject_rate'])} of good parts{mark('false_reject_rate')}",
            f"caught             {rate(summary['catch_rate'])} of defective parts{mark('catch_rate')}",
            *(f"  {kind:16} {rate(value)}" for kind, value in summary["per_defect"].items()),
            f"F1                 {number(summary['f1'])}",
            f"confusion          {counts['true_reject']} caught, {counts['false_accept']} missed, {counts['false_reject']} good rejected, "
            f"{counts['true_pass']} good passed",
        ]
    if summary["latency_ms"]:
        lines.append(f"latency            median {summary['latency_ms']['median']:.1f} ms, p95 {summary['latency_ms']['p95']:.1f} ms "
                     f"(pre-processing + graph at {summary.get('precision', '?')}; file read excluded)")
    return lines
