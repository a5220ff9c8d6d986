"""What every frame source shares: the Frame it yields, how it fails, and the keys every
``[source]`` table has (``roi``, ``retry_max_s``, ``max_pixels``).

A source's ``read(timeout_s)`` returns the next ``Frame``, or None when there is nothing yet
(a watched folder with no new file); it raises ``SourceEnded`` when a replay is over and
``SourceFault`` when the camera or stream fails (the daemon logs it, drops the ready line
and reopens the source with backoff), and ``BadFrame`` for one unreadable frame (logged as
a fault for that frame, never turned into a verdict). ``close()`` may be called twice.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

from inspectd.daemon.errors import ConfigError, SourceError
from inspectd.daemon.runtime.images import DEFAULT_MAX_PIXELS
from inspectd.daemon.station.settings import Section, setting


@dataclass
class Frame:
    pixels: np.ndarray  # uint8 after the region-of-interest crop: BGR height x width x 3, or gray height x width (the model judges the mode)
    name: str  # the file name, or the source kind and a capture counter
    captured_at: float  # time.monotonic() when it was taken
    # The loop calls it (on its own thread) once the frame's record, a verdict or a fault, was handed to the outputs;
    # a watched folder then moves the file out (never before: a kill in between must not lose the part).
    done: Callable[[], None] | None = field(default=None, repr=False, compare=False)


class SourceEnded(Exception):
    """A replay reached its end: the run is over, not an error."""


class SourceFault(SourceError):
    """The source failed (camera gone, stream dropped); reopening it may help."""


class BadFrame(SourceError):
    """One frame could not be read (a corrupt file); the source itself is fine."""


class Source(Protocol):
    name: str

    def read(self, timeout_s: float) -> Frame | None: ...

    def close(self) -> None: ...


@dataclass
class SourceConfig(Section):
    """The keys of ``[source]`` that every kind has; each kind adds its own."""

    kind: ClassVar[str]
    frames_on_demand: ClassVar[bool] = False  # frames come only when a part does (READY=1 cannot wait for one)
    modules: ClassVar[tuple[str, ...]] = ()  # Python modules it needs that the runtime does not bring (check and doctor look)
    module_fix: ClassVar[str] = ""  # how to install them

    roi: list[int] | None = None  # [x, y, width, height] crop applied to every frame
    retry_max_s: float = setting(30.0, above=0, fix="the longest wait between reconnects, in seconds, e.g. 30")
    max_pixels: int = setting(DEFAULT_MAX_PIXELS, above=0, fix="the largest frame accepted, in pixels; an image file declaring more is "
                                                               "refused before it is decoded")

    def check(self) -> None:
        roi = self.roi
        if roi is not None and (len(roi) != 4 or roi[2] <= 0 or roi[3] <= 0 or min(roi[:2]) < 0):
            raise ConfigError(f"must be [x, y, width, height] with a positive size, got {roi}", key="roi",
                              fix="e.g. roi = [200, 100, 1024, 640], or remove it for the whole frame")

    def open(self) -> Source:
        source = self.open_kind()
        return CroppedSource(source, self.roi) if self.roi else source

    def open_kind(self) -> Source:
        raise NotImplementedError

    def reading_only(self) -> SourceConfig:
        """The same source for a reader that is not the station (``inspectd collect``): nothing a station would consume is
        consumed (a watched folder's files stay). A camera is the same either way: its driver lets one process have it."""
        return self

    def sample(self) -> Frame | None:
        """A first frame through the ROI, for ``inspectd check``, where taking one disturbs nothing (a folder replay).

        None for cameras and streams: opening them would take them from a daemon that is running.
        """
        return None

    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of its frames before the ROI, when known without opening it (a camera's configured size)."""
        return None

    def camera_device(self) -> bool:
        """Whether it reads a camera's device node (/dev/video*, /dev/media*): ``inspectd doctor`` then requires one."""
        return False

    def most_pixels(self) -> tuple[int, str]:
        """The most pixels one of its frames can have after the ROI, and which key says so."""
        most, why = self.max_pixels, "source.max_pixels"
        size = self.frame_size()
        if size is not None and size[0] * size[1] < most:
            most, why = size[0] * size[1], "source.width x height"
        roi = self.valid_roi()
        if roi is not None and roi[2] * roi[3] < most:
            most, why = roi[2] * roi[3], "source.roi"
        return most, why

    def valid_roi(self) -> list[int] | None:
        """The ROI when it is one (four integers, a positive size, inside the first quadrant); else None (its error is reported)."""
        roi = self.roi
        if roi is None or len(roi) != 4 or min(roi[:2]) < 0 or min(roi[2:]) <= 0:
            return None
        return roi

    def roi_errors(self) -> list[ConfigError]:
        """The ROI against what is known of the frame before opening the source (a folder's frames are read by ``preflight``)."""
        roi, size = self.valid_roi(), self.frame_size()
        if roi is None:
            return []
        x, y, width, height = roi
        if size is not None and (x + width > size[0] or y + height > size[1]):
            return [ConfigError(f"{roi} reaches outside the {size[0]}x{size[1]} frame of source.width and height", key="source.roi",
                                fix="make it fit inside the frame, or raise the capture size")]
        if width * height > self.max_pixels:
            return [ConfigError(f"{roi} covers {width * height} pixels, more than source.max_pixels ({self.max_pixels})",
                                key="source.roi", fix="make it smaller, or raise source.max_pixels")]
        return []

    def preflight(self, notes: list[str]) -> Frame | None:
        """What ``inspectd check`` can verify without disturbing a running daemon: its modules are there, and a first frame
        through the ROI where taking one disturbs nothing; ``notes`` get what was looked at, or not and why (before a
        ConfigError is raised)."""
        missing = [name for name in self.modules if importlib.util.find_spec(name) is None]
        if missing:
            raise ConfigError(f"the {' and '.join(missing)} module{'s are' if len(missing) > 1 else ' is'} missing", key="source.kind",
                              fix=self.module_fix)
        frame = self.sample()
        if frame is None:
            notes.append("source: the first frame is unreadable (a fault record at run time, not a configuration error)")
            return None
        height, width = frame.pixels.shape[:2]
        notes.append(f"source: first frame '{frame.name}' read, {width}x{height} after the ROI")
        return frame


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
            raise ConfigError(f"{self.roi} reaches outside the {frame_width}x{frame_height} frame '{frame.name}'", key="source.roi",
                              fix="make it fit inside the frame")
        frame.pixels = np.ascontiguousarray(frame.pixels[y : y + height, x : x + width])
        return frame

    def close(self) -> None:
        self.source.close()
