"""The model's input size: square (``128``), given (``128x192``, height x width), or following the images' aspect ratio.

A part that is twice as wide as it is high, squashed into a square, loses half its detail across and keeps all of it
down: an input of the images' own shape keeps both. PaDiM's statistics are per position, so any height and width
work; each must be a multiple of 32 (the backbones' largest stride).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.runtime.image_header import declared_size
from inspectd.daemon.runtime.images import read_image

STRIDE = 32


@dataclass(frozen=True)
class ImageSize:
    height: int
    width: int

    @property
    def short(self) -> int:
        return min(self.height, self.width)

    @property
    def square(self) -> bool:
        return self.height == self.width

    @classmethod
    def of(cls, value: int | tuple[int, int] | ImageSize) -> ImageSize:
        if isinstance(value, ImageSize):
            return value
        if isinstance(value, tuple):
            return cls(int(value[0]), int(value[1]))
        return cls(int(value), int(value))

    @classmethod
    def parse(cls, text: str) -> ImageSize:
        """``128`` (square) or ``128x192`` (height x width)."""
        parts = text.lower().replace("*", "x").split("x")
        try:
            numbers = [int(part) for part in parts]
        except ValueError:
            raise ValueError(f"{text!r} is not N or HxW (e.g. 128 or 128x192)") from None
        if len(numbers) not in (1, 2):
            raise ValueError(f"{text!r} is not N or HxW (e.g. 128 or 128x192)")
        return cls(numbers[0], numbers[-1])

    def __str__(self) -> str:
        return f"{self.height}x{self.width}"


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header when it declares one."""
    try:
        with open(path, "rb") as handle:
            declared = declared_size(handle.read(1 << 16))
    except OSError as exc:
        raise InspectdError(f"cannot be read ({exc.strerror})", file=path, fix="check that the file exists and is readable") from None
    if declared is not None and declared[0] > 0 and declared[1] > 0:
        return declared[1], declared[0]
    return read_image(path).shape[:2]


def aspect_size(images: list[Path], short: int) -> ImageSize:
    """An input of the images' (median) aspect ratio: the shorter side ``short``, the longer rounded to a multiple of 32."""
    if not images:
        raise InspectdError("no images to take an aspect ratio from", fix="pass a folder of good images")
    ratios = [width / height for height, width in map(image_shape, images)]
    ratio = statistics.median(ratios)
    spread = max(ratios) / min(ratios)
    if spread > 1.25:
        raise InspectdError(f"the images' aspect ratios range from {min(ratios):.2f} to {max(ratios):.2f} (width / height): one input "
                            "shape would stretch some of them", fix="crop them to one shape (the station's roi does it on the line), "
                            "or pass --image-size HxW to choose the stretch")
    if ratio >= 1:
        return ImageSize(short, max(short, round(short * ratio / STRIDE) * STRIDE))
    return ImageSize(max(short, round(short / ratio / STRIDE) * STRIDE), short)
