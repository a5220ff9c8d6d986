"""Three roles for an image, never mixed: fitting the model, setting its threshold, reporting how it does.

A model scores the images it was fitted on lower than new parts, and a threshold set on some images meets its target
on those same images by construction. So a figure is measured on images that played neither part, and where there
are none, it is marked "in-sample".

- ``train`` splits its data folder (``split``): MVTec layout, ``train/good`` fits the model and, cross-fitted (each
  image scored by a model fitted without it, ``export.crossfit``), sets the threshold; ``test/`` reports. A plain
  folder of good images: every 4th image reports, the others fit. With ``--choose``, every other defective image of
  each kind chooses the model (``validation``) and the others report.
- The model folder records the images of each role by content (``schema.ImageRoles``: the first 16 hex digits of each
  file's sha256), so ``evaluate`` and ``calibrate``, given any folder of images, tell which of them played a part
  (``role_of``), whatever they are called or wherever they were copied.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.evaluation.dataset import GOOD, Sample, labelled_images
from inspectd.daemon.runtime.images import list_images
from inspectd.daemon.schema import ImageRoles

DIGEST_CHARS = 16
HOLD_OUT_EVERY = 4  # a plain folder of good images: every 4th reports
FIT, THRESHOLD, CHOSE, NEITHER, UNKNOWN = "fit", "threshold", "chose", "neither", "unknown"


def digest(path: Path) -> str:
    """The image file's identity for the roles: the first 16 hex digits of its sha256."""
    hashed = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hashed.update(block)
    except OSError as exc:
        raise InspectdError(f"cannot be read ({exc.strerror})", file=path, fix="check that the file exists and is readable") from None
    return hashed.hexdigest()[:DIGEST_CHARS]


@dataclass(frozen=True)
class Split:
    """``train``'s images by role."""

    fit: list[Path]  # fit the model; cross-fitted, they set the threshold too
    report: list[Sample]  # neither: every figure printed for the line
    validation: list[Sample]  # defective images that choose the model (``--choose``); empty otherwise

    def counts(self) -> str:
        good = sum(not s.anomalous for s in self.report)
        return (f"{len(self.fit)} good images fit the model and set its threshold (each scored by a model fitted without it); "
                + (f"{len(self.validation)} defective images choose the model; " if self.validation else "")
                + f"{good} good and {len(self.report) - good} defective images report (used for neither)")


def split(data_dir: Path, validation: bool = False) -> Split:
    """The roles of a data folder's images: MVTec layout (``train/good``, ``test/good``, ``test/<defect>``) or a plain
    folder of good images."""
    if not data_dir.is_dir():
        raise InspectdError("data folder not found", file=data_dir,
                            fix="pass an MVTec-layout folder (train/good, test/...) or a folder of good images")
    if (data_dir / "train" / "good").is_dir():
        fit = list_images(data_dir / "train" / "good")
        if not fit:
            raise InspectdError("holds no images", file=data_dir / "train" / "good", fix="put pictures of good parts there")
        if not (data_dir / "test" / GOOD).is_dir() or not list_images(data_dir / "test" / GOOD):
            raise InspectdError("missing or empty", file=data_dir / "test" / GOOD,
                                fix="put good images there that training does not see: the false-reject rate is reported on them")
        held = labelled_images(data_dir)
    else:
        images = list_images(data_dir)
        if len(images) < 2 * HOLD_OUT_EVERY:
            raise InspectdError(f"holds {len(images)} images; PaDiM needs at least {2 * HOLD_OUT_EVERY} pictures of good parts "
                                "(more is better: 50-200)", file=data_dir, fix="add pictures of good parts")
        fit = [p for number, p in enumerate(images) if number % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
        held = [Sample(p, GOOD, None) for number, p in enumerate(images) if number % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    if not validation:
        return Split(fit, held, [])
    seen: Counter[str] = Counter()
    chosen, report = [], []
    for sample in held:
        if sample.anomalous:
            seen[sample.kind] += 1
            (chosen if seen[sample.kind] % 2 else report).append(sample)
        else:
            report.append(sample)
    return Split(fit, report, chosen)


def role_of(samples: list[Sample], roles: ImageRoles | None) -> list[str]:
    """Each sample's part in the model folder: "fit", "threshold" (set it, not fitted on), "chose" (chose the model among
    train --choose's candidates), "neither", or "unknown" when the folder does not record its images."""
    if roles is None:
        return [UNKNOWN] * len(samples)
    fit, threshold, chose = set(roles.fit or ()), set(roles.threshold), set(roles.chose)
    found = []
    for sample in samples:
        key = digest(sample.path)
        found.append(FIT if key in fit else THRESHOLD if key in threshold else CHOSE if key in chose
                     else NEITHER if roles.fit is not None else UNKNOWN)
    return found


def describe(roles: list[str]) -> str:
    """The counts of each role, for a summary line."""
    count = Counter(roles)
    parts = [f"{count[NEITHER]} used for neither fitting nor the threshold"]
    if count[FIT]:
        parts.append(f"{count[FIT]} the model was fitted on")
    if count[THRESHOLD]:
        parts.append(f"{count[THRESHOLD]} that set its threshold")
    if count[CHOSE]:
        parts.append(f"{count[CHOSE]} that chose it among train --choose's candidates")
    if count[UNKNOWN]:
        parts = [f"{count[UNKNOWN]} whose part in the model is not known (the folder does not record its fitting images)"] + parts[1:]
    return ", ".join(parts)
