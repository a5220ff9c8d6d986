"""Colour or monochrome: the one rule for which frames a model folder takes, and for what a training set is.

A model folder records what it was trained on (``input.color`` in inspectd.json): "rgb" or
"gray". A frame is gray when it has one channel (a grayscale file, a monochrome camera) or
three equal ones (a monochrome camera delivered as BGR, a gray picture saved as colour);
otherwise it is colour. A frame that holds one value everywhere (a black frame: lens cap,
light off) is both: it carries no colour, and either model sees the same input.

    >>> conform(np.zeros((4, 4), np.uint8), "gray", "a.png").shape   # a gray frame, for a gray model
    (4, 4, 1)
    >>> conform(np.zeros((4, 4), np.uint8), "rgb", "a.png")           # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    SourceError: a.png: is a grayscale frame but the model folder was trained on colour images ...

What is converted is what loses nothing and means one thing: a gray frame's channel is what a
gray model was trained on (three times, as anomalib's PIL ``convert("RGB")`` gives it), and a
colour frame whose three channels are equal is that same gray frame. What is refused is a real
mismatch: a colour frame for a gray model (converting it would invent a gray the model never
saw and score it silently), a gray frame for a colour model (its scores mean nothing: every
part would be rejected, or worse, passed).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from inspectd.daemon.schema import GRAY, RGB
from inspectd.daemon.errors import InspectdError, SourceError

_BLOCK_ROWS = 256  # rows compared at a time: no temporary larger than a few rows of the frame


def channels_equal(frame: np.ndarray) -> bool:
    """Whether a height x width x 3 frame's three channels are equal in every pixel.

    A colour frame usually differs in its first rows, so it is answered after one block.
    """
    for start in range(0, frame.shape[0], _BLOCK_ROWS):
        rows = frame[start : start + _BLOCK_ROWS]
        if not (np.array_equal(rows[:, :, 0], rows[:, :, 1]) and np.array_equal(rows[:, :, 1], rows[:, :, 2])):
            return False
    return True


def _uniform(frame: np.ndarray) -> bool:
    first = frame.reshape(-1)[:1]
    for start in range(0, frame.shape[0], _BLOCK_ROWS):
        if not np.all(frame[start : start + _BLOCK_ROWS] == first):
            return False
    return True


def frame_color(frame: np.ndarray) -> str:
    """"gray" for one channel or three equal ones, else "rgb" (an uint8 frame: height x width, x 1 or x 3)."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return GRAY
    return GRAY if channels_equal(frame) else RGB


def check_frame(frame: np.ndarray, name: str = "frame") -> None:
    """An 8-bit frame of one channel (height x width, or x 1) or three (BGR); anything else is a programming error's message."""
    if (not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3)
            or (frame.ndim == 3 and frame.shape[2] not in (1, 3)) or 0 in frame.shape):
        described = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InspectdError(f"{name}: is a {described}; the model needs an 8-bit image (height x width x 3 BGR, or height x width gray)")


def conform(frame: np.ndarray, color: str, name: str = "frame") -> np.ndarray:
    """The frame as a model trained on ``color`` takes it: height x width x 1 for "gray", x 3 (BGR) for "rgb".

    A mismatch is a SourceError naming ``name`` (the file or the source's frame), what was
    expected and the fix. The frame is not copied.
    """
    check_frame(frame, name)
    single = frame.ndim == 2 or frame.shape[2] == 1
    if color == GRAY:
        if single:
            return frame.reshape(frame.shape[0], frame.shape[1], 1)
        if channels_equal(frame):
            return frame[:, :, :1]
        raise SourceError("is a colour frame but the model folder was trained on grayscale images (input.color \"gray\" in "
                          "inspectd.json); inspectd does not convert colour to gray", file=name,
                          fix="send the camera's monochrome output (or grayscale files), or train a model on colour images")
    if single or (channels_equal(frame) and not _uniform(frame)):
        what = "grayscale frame" if single else "grayscale frame (its three channels are equal)"
        raise SourceError(f"is a {what} but the model folder was trained on colour images (input.color \"rgb\")", file=name,
                          fix="use the camera's colour output, or retrain with the grayscale images ('inspectd train' on a gray "
                              "set records input.color \"gray\")")
    return frame


class MixedColours(InspectdError):
    """A training or calibration set of gray and colour images."""


def dataset_color(images: Iterable[tuple[Path, np.ndarray]], what: str = "the training images") -> str:
    """The colour mode of a set of (path, decoded frame): "gray" when every one is gray, "rgb" when every one is colour.

    A mixed set is refused, naming a file of each kind, rather than trained as colour: a gray
    picture among colour ones is a different camera or a conversion gone wrong, and a colour
    model taught on it would take the station's gray frames for normal, or the other way round;
    the integrator expects the set to be one camera's pictures. Black frames (one value
    everywhere) count as either. An empty set is colour.
    """
    first: dict[str, Path] = {}
    for path, frame in images:
        if frame.ndim == 3 and frame.shape[2] == 3 and _uniform(frame):
            continue
        kind = frame_color(frame)
        first.setdefault(kind, path)
        if len(first) == 2:
            raise MixedColours(f"{what} mix grayscale and colour pictures: {first[GRAY]} is grayscale, {first[RGB]} is colour",
                               fix="train on one camera's pictures: convert the set to one mode, or remove the odd ones")
    return GRAY if GRAY in first else RGB


def files_color(paths: Iterable[Path], what: str = "the training images") -> str:
    """``dataset_color`` of image files, each read as the runtime reads it (an unreadable one is its SourceError)."""
    from inspectd.daemon.runtime.images import read_image

    return dataset_color(((Path(p), read_image(p)) for p in paths), what)
