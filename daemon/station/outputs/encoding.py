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
        """The frame's PNG, in chunks; stored rather than deflated when ``fast`` or at level 0. Raises png.Abandoned."""
        return encode_png(pixels, abandoned, fast or self.level == 0, self.level, self.strategy, self.row_filter)

    def heatmap(self, picture: np.ndarray, abandoned: Callable[[], bool] = lambda: False, fast: bool = False) -> list[bytes]:
        """The heatmap picture's file, in chunks (a JPEG is one: it is encoded inside OpenCV, tens of milliseconds)."""
        if self.heatmap_quality is None:
            return self.frame(picture, abandoned, fast)
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.heatmap_quality])
        if not ok:
            raise ValueError(f"OpenCV could not encode a {picture.shape} heatmap picture as JPEG")
        return [data.tobytes()]


PNG_LEVEL_1 = Encoding("png-up-l1 + png heatmap", heatmap_quality=None)  # before issue 14: both PNG, zlib level 1
# Measured (bench/archive_burst.py: 200 rejects of 1456x1088 at 10 frames/s, this 2-core machine at load 7-13): frames
# missed of 400 / MB a reject / the writer's CPU ms a reject, two runs: before 280-289 / 9.0-9.3 / 166-210; the frame
# deflated with runs only 13-14 / 3.7-4.0 / 53-62; the same stored while one waits 0-15 / 4.1-4.7 / 41-54 (its time
# estimate learns only from deflated frames: pessimistic while it stores); the frame stored 0 and 0 / 5.3 / 31-33.
ENCODING = Encoding("png stored + jpeg heatmap", level=0)
