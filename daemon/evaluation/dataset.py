"""Labelled images to measure a model folder on: the MVTec layout, or good/ beside defect folders.

    DATA/test/good/*.png, DATA/test/<defect>/*.png, DATA/ground_truth/<defect>/<name>_mask.png (255 = defect)
    DATA/good/*.png, DATA/<defect>/*.png                   (no masks: image metrics only)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.runtime.images import list_images

GOOD = "good"


@dataclass(frozen=True)
class Sample:
    path: Path
    kind: str  # "good", or the defect folder's name
    mask: Path | None  # the ground-truth mask, where the data set has one

    @property
    def anomalous(self) -> bool:
        return self.kind != GOOD


def _listed(folder: Path, lister=lambda folder: list(folder.iterdir())) -> list[Path]:
    """The folder's entries (or its images); one line naming it when it cannot be listed."""
    try:
        return lister(folder)
    except OSError as exc:
        raise InspectdError(f"cannot be read ({exc.strerror or exc})", file=folder,
                            fix="give the user running inspectd read and execute permission on it (chmod u+rx), or move it out") from None


def labelled_images(data: str | Path) -> list[Sample]:
    """Every labelled image under ``data``, good ones first, then each defect kind by name."""
    data = Path(data)
    if not data.is_dir():
        raise InspectdError("data folder not found", file=data, fix="pass an MVTec-layout folder (test/good, test/<defect>) or good/ + defect folders")
    images = data / "test" if (data / "test" / GOOD).is_dir() else data
    masks = data / "ground_truth"
    if not (images / GOOD).is_dir():
        raise InspectdError("has no good/ folder", file=images, fix="put images of good parts in good/ and each defect kind in a folder of its own")
    samples = []
    for kind in [GOOD] + sorted(p.name for p in _listed(images) if p.is_dir() and p.name != GOOD):
        for path in _listed(images / kind, list_images):
            mask = masks / kind / f"{path.stem}_mask.png"
            samples.append(Sample(path, kind, mask if mask.is_file() else None))
    good = sum(not s.anomalous for s in samples)
    if good == 0:
        raise InspectdError("holds no images of good parts", file=images / GOOD, fix="add some: false rejects are measured on them")
    return samples
