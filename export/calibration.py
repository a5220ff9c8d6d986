"""Calibration images and the thresholds measured on them (raw PaDiM score units).

A calibration folder is either
- a folder of normal images, or
- labelled: a ``good/`` sub-folder of normal images beside one sub-folder per defect kind
  (an MVTec root is accepted too: its ``test/`` folder is used).
Rule everywhere: a frame is anomalous when its score is above the threshold. The thresholds
themselves are chosen in ``inspectd.daemon.evaluation.thresholds`` (also used by ``calibrate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.runtime.images import list_images
from inspectd.daemon.schema import NormalScores


@dataclass
class Sample:
    path: Path
    anomalous: bool


def collect(folder: str | Path) -> list[Sample]:
    folder = Path(folder)
    if (folder / "test").is_dir() and not list_images(folder):
        folder = folder / "test"
    if not folder.is_dir():
        raise InspectdError(f"{folder}: calibration folder not found; pass a folder of images (or good/ + defect sub-folders)")
    samples = [Sample(p, False) for p in list_images(folder)]
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    if subfolders:
        if not (folder / "good").is_dir():
            raise InspectdError(f"{folder}: has sub-folders but no 'good/'; put normal images in good/ and each defect kind in its own folder")
        for sub in subfolders:
            samples += [Sample(p, sub.name != "good") for p in list_images(sub)]
    if not any(not s.anomalous for s in samples):
        raise InspectdError(f"{folder}: holds no normal images; calibration needs pictures of good parts")
    return samples


def normal_statistics(normal_scores: np.ndarray) -> NormalScores:
    """What later drift monitoring compares live scores against."""
    return NormalScores(
        count=int(normal_scores.size),
        mean=float(normal_scores.mean()),
        std=float(normal_scores.std(ddof=1)) if normal_scores.size > 1 else 0.0,
        min=float(normal_scores.min()),
        p50=float(np.quantile(normal_scores, 0.5)),
        p95=float(np.quantile(normal_scores, 0.95)),
        p99=float(np.quantile(normal_scores, 0.99)),
        max=float(normal_scores.max()),
    )
