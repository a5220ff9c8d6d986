"""PNG encoding in blocks of rows with zlib alone: lossless, and abandoned between two blocks when asked.

The archive's writer thread encodes with this rather than OpenCV. OpenCV's encoder runs to its
end (seconds for a large frame), and a thread inside OpenCV when the interpreter exits aborts
the process: a stop could wait for neither. Rows are filtered (``row_filter``: "Up", each row
minus the one above, or "Sub", each pixel minus the one on its left) and deflated at a zlib
level and strategy of the caller's (``encoding`` holds what the archive uses, measured by
bench/archive_burst.py). ``fast``: stored, not deflated (no filter): several times faster, files
as large as the pixels; for an archive that is behind.

    >>> import numpy as np, cv2
    >>> image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    >>> data = b"".join(encode_png(image))
    >>> bool(np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), image))
    True
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
BLOCK_ROWS = 128  # rows deflated between two looks at ``abandoned``: milliseconds each at camera sizes
NONE, SUB, UP = 0, 1, 2  # PNG filter types


class Abandoned(Exception):
    """The archive was told to stop before this file was complete."""


def encode_png(image: np.ndarray, abandoned: Callable[[], bool] = lambda: False, fast: bool = False, level: int = 1,
               strategy: int = zlib.Z_DEFAULT_STRATEGY, row_filter: int = UP) -> list[bytes]:
    """A BGR uint8 image (height x width x 3), or a gray one (height x width, or x 1), as the chunks of a PNG file
    (RGB or gray, 8 bits): rows filtered with ``row_filter`` (UP: each byte minus the one above; SUB: minus the one of
    the pixel on its left), deflated at zlib ``level`` with ``strategy``; raises Abandoned."""
    gray = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1)
    if image.dtype != np.uint8 or not (gray or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected a BGR or gray uint8 image, got a {image.dtype} array of shape {image.shape}")
    height, width = image.shape[:2]
    channels, colour_type = (1, 0) if gray else (3, 2)
    chunks = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))]
    deflate = zlib.compressobj(0) if fast else zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, strategy)
    above = np.zeros(width * channels, dtype=np.uint8)
    for start in range(0, height, BLOCK_ROWS):
        if abandoned():
            raise Abandoned("stopped before the file was complete")
        block = image[start : start + BLOCK_ROWS]
        rows = block.reshape(-1, width) if gray else block[:, :, ::-1].reshape(-1, width * 3)
        filtered = np.empty((rows.shape[0], width * channels + 1), dtype=np.uint8)
        if fast:
            filtered[:, 0] = NONE
            filtered[:, 1:] = rows
        elif row_filter == SUB:
            filtered[:, 0] = SUB
            filtered[:, 1 : 1 + channels] = rows[:, :channels]
            np.subtract(rows[:, channels:], rows[:, :-channels], out=filtered[:, 1 + channels :])  # uint8: wraps modulo 256, as PNG wants
        else:
            filtered[:, 0] = UP
            np.subtract(rows[0], above, out=filtered[0, 1:])
            np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
            above = rows[-1].copy()
        compressed = deflate.compress(filtered)
        if compressed:
            chunks.append(_chunk(b"IDAT", compressed))
    chunks += [_chunk(b"IDAT", deflate.flush()), _chunk(b"IEND", b"")]
    return chunks


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
