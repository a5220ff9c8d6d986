"""Frame -> graph input, exactly as anomalib's training pre-processing does it.

anomalib trains with ``torchvision.transforms.v2.Resize(size, antialias=True)`` on float
images. Its own OpenVINO export drops the antialiasing (ONNX has no such resize), so an
exported model sees sharper, aliased inputs than it was trained on and its scores and maps
move. inspectd reproduces the antialiased resize here, in numpy, with the same filter:
for each output pixel a triangle (bilinear) filter whose support grows with the downscale
factor, weights normalised to sum to one (torch's ``_upsample_bilinear2d_aa``, which is
PIL's algorithm). tests/integration/test_preprocess_torchvision.py checks it against torchvision itself.

Normalisation (mean/std) and BGR->RGB happen inside the graph; this module only resizes
(and centre-crops if training did).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.runtime.colour import conform
from inspectd.daemon.schema import Preprocessing


BLOCK = 4  # output rows (columns) per product; measured: 4 beats 8 and 16 (768x576 -> 128: 0.8 ms against 1.7 ms before)


@lru_cache(maxsize=32)
def antialias_matrix(in_size: int, out_size: int) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """The antialiased bilinear resampling of one axis as banded matrix blocks.

    Row i of the (out_size x in_size) matrix holds output pixel i's filter weights. The matrix
    is banded, so it is kept as blocks of BLOCK output rows with only the input columns
    they touch: (out_start, out_end, in_start, in_end, weights). A dense product would cost
    out_size x in_size multiply-adds per channel; for 900 -> 256 the blocks cost about 1/50.
    """
    scale = in_size / out_size
    support = max(scale, 1.0)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        taps = np.arange(first, last)
        weights = np.clip(1.0 - np.abs((taps - center + 0.5) / support), 0.0, None)
        matrix[i, first:last] = weights / weights.sum()
    blocks = []
    for start in range(0, out_size, BLOCK):
        block = matrix[start : start + BLOCK]
        used = np.flatnonzero(block.any(axis=0))
        lo, hi = int(used[0]), int(used[-1]) + 1
        blocks.append((start, start + block.shape[0], lo, hi, np.ascontiguousarray(block[:, lo:hi], dtype=np.float32)))
    return tuple(blocks)


@lru_cache(maxsize=32)
def interleaved_matrix(in_size: int, out_size: int, channels: int) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """``antialias_matrix`` for the columns of rows that hold ``channels`` interleaved values per pixel (H x W*C).

    Each block, transposed and widened to act on every channel alike (Kronecker product with the
    C x C identity), multiplies the rows from the right: the resized rows come out in the frame's
    own layout, with no transposed copy of the image in between.
    """
    identity = np.eye(channels, dtype=np.float32)
    return tuple((start * channels, end * channels, lo * channels, hi * channels, np.kron(weights.T, identity))
                 for start, end, lo, hi, weights in antialias_matrix(in_size, out_size))


def _resample_rows(data: np.ndarray, out_size: int) -> np.ndarray:
    """Resample axis 0 of a 2-D array (any numeric type) into float32.

    Each block converts only the input rows it reads to float32: a frame is never copied whole
    as float32 (four times its own size: 480 MB for 40 megapixels). The products are the same
    as on a whole float32 copy, value for value.
    """
    out = np.empty((out_size, data.shape[1]), dtype=np.float32)
    for start, end, lo, hi, weights in antialias_matrix(data.shape[0], out_size):
        rows = data[lo:hi] if data.dtype == np.float32 else data[lo:hi].astype(np.float32)
        np.matmul(weights, rows, out=out[start:end])
    return out


def resize_antialias(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an H x W x C image to float32 height x width x C (contiguous), as torchvision does: rows, then columns."""
    in_height, in_width, channels = image.shape
    rows = _resample_rows(image.reshape(in_height, in_width * channels), height)
    out = np.empty((height, width * channels), dtype=np.float32)
    for start, end, lo, hi, weights in interleaved_matrix(in_width, width, channels):
        out[:, start:end] = rows[:, lo:hi] @ weights
    return out.reshape(height, width, channels)


def resized_size(frame_height: int, frame_width: int, size: int | tuple[int, int]) -> tuple[int, int]:
    """torchvision's Resize output size: (h, w) as given, or the shorter edge set to ``size``."""
    if isinstance(size, tuple):
        return size
    if frame_height <= frame_width:
        return size, int(size * frame_width / frame_height)
    return int(size * frame_height / frame_width), size


def crop_offset(height: int, width: int, crop: tuple[int, int]) -> tuple[int, int]:
    """torchvision's CenterCrop offsets (top, left)."""
    return int(round((height - crop[0]) / 2.0)), int(round((width - crop[1]) / 2.0))


def prepare(frame: np.ndarray, spec: Preprocessing, name: str = "frame") -> np.ndarray:
    """A uint8 frame of the model's colour mode -> the graph's (1, H, W, 3) float32 input (BGR, 0..255).

    The frame must be what ``spec.color`` takes (``colour.conform``: a mismatch is a SourceError
    naming ``name``). A gray frame is resized as its one channel and then repeated three times:
    the same values as resizing three equal channels, at a third of the cost.
    """
    frame = conform(frame, spec.color, name)
    height, width = resized_size(frame.shape[0], frame.shape[1], spec.resize)
    resized = resize_antialias(frame, height, width)
    if spec.center_crop is not None:
        top, left = crop_offset(height, width, spec.center_crop)
        if top < 0 or left < 0:
            raise InspectdError(
                f"frame of {frame.shape[1]}x{frame.shape[0]} is smaller than the model's centre crop "
                f"{spec.center_crop[1]}x{spec.center_crop[0]} after resizing; use a larger frame"
            )
        resized = resized[top : top + spec.center_crop[0], left : left + spec.center_crop[1]]
    if resized.shape[2] == 1:
        resized = np.repeat(resized, 3, axis=2)
    return resized[None]


def model_region(frame_height: int, frame_width: int, spec: Preprocessing) -> tuple[float, float, float, float]:
    """The part of the frame the model sees, as (top, left, bottom, right) in frame pixels."""
    height, width = resized_size(frame_height, frame_width, spec.resize)
    if spec.center_crop is None:
        return 0.0, 0.0, float(frame_height), float(frame_width)
    top, left = crop_offset(height, width, spec.center_crop)
    sy, sx = frame_height / height, frame_width / width
    return top * sy, left * sx, (top + spec.center_crop[0]) * sy, (left + spec.center_crop[1]) * sx
