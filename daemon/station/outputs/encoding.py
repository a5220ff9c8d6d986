"""How the archive turns a reject into files: the frame as a lossless PNG (evidence, and training material that
``inspectd`` reads back like any image), the heatmap picture (for a person) as JPEG or PNG.

``ENCODING`` is what the archive uses; bench/archive_burst.py measures it against the others (bytes and encode time
per frame, frames missed in a burst of camera frames, the station's frame rate meanwhile).

    >>> import numpy as np, cv2
    >>> frame = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    >>> data = b"".join(ENCODING.frame(frame))
    >>> bool(np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), frame))
    True
    >>> ENCODING.heatmap_suffix
    '.jpg'
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from inspectd.daemon.station.outputs.png import UP, encode_png


@dataclass(frozen=True)
class Encoding:
    name: str = field(compare=False)
    level: int = 1  # the frame's zlib level
    strategy: int = zlib.Z_DEFAULT_STRATEGY  # and strategy
    row_filter: int = UP  # the PNG filter of its rows (png.UP or png.SUB)
    heatmap_quality: int | None = 90  # the heatmap picture as a JPEG of this quality; None: a PNG encoded as the frame
    store_behind_s: float = 2.0  # a frame is stored, not deflated, when more than this much writing waits behind it (0: any)

    @property
    def heatmap_suffix(self) -> str:
        return ".png" if self.heatmap_quality is None else ".jpg"

    def frame(self, pixels: np.ndarray, abandoned: Callable[[], bool] = lambda: False, fast: bool = False) -> list[bytes]:
        """The frame's PNG, in chunks; stored rather than deflated when ``fast``. Raises png.Abandoned."""
        return encode_png(pixels, abandoned, fast, self.level, self.strategy, self.row_filter)

    def heatmap(self, picture: np.ndarray, abandoned: Callable[[], bool] = lambda: False, fast: bool = False) -> list[bytes]:
        """The heatmap picture's file, in chunks (a JPEG is one: it is encoded inside OpenCV, tens of milliseconds)."""
        if self.heatmap_quality is None:
            return self.frame(picture, abandoned, fast)
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.heatmap_quality])
        if not ok:
            raise ValueError(f"OpenCV could not encode a {picture.shape} heatmap picture as JPEG")
        return [data.tobytes()]


PNG_LEVEL_1 = Encoding("png-up-l1 + png heatmap", heatmap_quality=None)  # before issue 14: both PNG, zlib level 1
# Measured (bench/archive_burst.py, 1456x1088 frames, this 2-core machine under load): the writer's CPU a reject 188-227 ms
# before, 33 ms with the frame always stored (5.3 MB a reject), 60 ms deflated with runs only (3.8 MB) and 51 ms when a frame
# is stored only while another waits behind it (4.2 MB): the one with no frame missed and still deflating when it keeps up.
ENCODING = Encoding("png-up-l1-rle + jpeg heatmap, stored while one waits", strategy=zlib.Z_RLE, store_behind_s=0.0)
