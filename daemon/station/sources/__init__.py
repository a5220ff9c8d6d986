"""Frame sources: where pictures of parts come from. One module per kind, chosen by config.

A source's ``read(timeout_s)`` returns the next ``Frame``, or None when there is nothing yet
(a watched folder with no new file); it raises ``SourceEnded`` when a replay is over and
``SourceFault`` when the camera or stream fails (the daemon logs it, drops the ready line
and reopens the source with backoff), and ``BadFrame`` for one unreadable frame (logged as
a fault for that frame, never turned into a verdict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from inspectd.daemon.station.config import SourceConfig
from inspectd.daemon.errors import InspectdError


@dataclass
class Frame:
    pixels: np.ndarray  # BGR uint8, height x width x 3, after the region-of-interest crop
    name: str  # the file name, or the source kind and a capture counter
    captured_at: float  # time.monotonic() when it was taken


class SourceEnded(Exception):
    """A replay reached its end."""


class SourceFault(Exception):
    """The source failed (camera gone, stream dropped); reopening it may help."""


class BadFrame(Exception):
    """One frame could not be read (a corrupt file); the source itself is fine."""


class Source(Protocol):
    name: str

    def read(self, timeout_s: float) -> Frame | None: ...

    def close(self) -> None: ...


class CroppedSource:
    """The region of interest, applied identically whatever the source."""

    def __init__(self, source: Source, roi: list[int]) -> None:
        self.source, self.roi, self.name = source, roi, source.name

    def read(self, timeout_s: float) -> Frame | None:
        frame = self.source.read(timeout_s)
        if frame is None:
            return None
        x, y, width, height = self.roi
        frame_height, frame_width = frame.pixels.shape[:2]
        if x + width > frame_width or y + height > frame_height:
            raise InspectdError(
                f"source.roi {self.roi} reaches outside the {frame_width}x{frame_height} frame '{frame.name}'; make it fit"
            )
        frame.pixels = np.ascontiguousarray(frame.pixels[y : y + height, x : x + width])
        return frame

    def close(self) -> None:
        self.source.close()


def open_source(config: SourceConfig) -> Source:
    if config.kind == "directory":
        from inspectd.daemon.station.sources.directory import DirectorySource

        source: Source = DirectorySource(config.path, config.mode)
    elif config.kind == "opencv":
        from inspectd.daemon.station.sources.opencv import OpenCVSource

        source = OpenCVSource(config.device, config.width, config.height)
    else:
        from inspectd.daemon.station.sources.picamera2 import Picamera2Source

        source = Picamera2Source(config.width, config.height, config.settle_ms)
    return CroppedSource(source, config.roi) if config.roi else source
