"""``[source] kind = "opencv"``: a V4L2 device (index or /dev/videoN), an RTSP/HTTP stream, or a video file.

    >>> source = OpenCVSource("rtsp://camera.local/stream", 1920, 1080)   # doctest: +SKIP

A file ends the run at its last frame; a device or stream that stops delivering is a
``SourceFault`` (the daemon reopens it with backoff). A stream that hangs inside OpenCV
stops the daemon's watchdog pings, and systemd restarts the service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.sources.interface import Frame, Source, SourceConfig, SourceEnded, SourceFault

SIZE_FIX = "the capture size in pixels, e.g. width = 1536, height = 864"


@dataclass
class OpenCVConfig(SourceConfig):
    kind: ClassVar[str] = "opencv"

    device: str = "0"  # device index, /dev/videoN, rtsp://, http://, or a video file
    width: int = setting(1536, above=0, fix=SIZE_FIX)  # asked of devices; streams and files keep their own
    height: int = setting(864, above=0, fix=SIZE_FIX)

    def open_kind(self) -> Source:
        return OpenCVSource(self.device, self.width, self.height)

    def is_video_file(self) -> bool:
        return Path(self.device).is_file()

    def camera_device(self) -> bool:
        return "://" not in self.device and not self.is_video_file()

    def sample(self) -> Frame | None:
        """A video file's first frame; a camera or stream is not opened (a running daemon may hold it)."""
        if not self.is_video_file():
            return None
        video = self.open()
        try:
            return video.read(0.0)
        except SourceEnded:
            raise ConfigError(f"'{self.device}' holds no frames", key="source.device", fix="point it to a video with frames") from None
        finally:
            video.close()

    def preflight(self, notes: list[str]) -> Frame | None:
        if self.is_video_file():
            return super().preflight(notes)
        present = "" if "://" in self.device or self.device.isdigit() or Path(self.device).exists() else \
            f"; {self.device} does not exist now: run retries until it appears"
        notes.append(f"source: {self.device} not opened (a camera or stream may be held by a running daemon, and opening a stream "
                     f"proves nothing about the next minute){present}")
        return None


class OpenCVSource:
    def __init__(self, device: str, width: int, height: int) -> None:
        self.device = device
        self.is_file = Path(device).is_file()
        self.name = f"opencv:{device}"
        self.count = 0
        target: int | str = int(device) if device.isdigit() else device
        self.capture = cv2.VideoCapture(target)
        if not self.capture.isOpened():
            raise SourceFault(f"'{device}': OpenCV cannot open it (no such camera, stream unreachable or unsupported file)",
                              key="source.device", fix="check the device, URL or file")
        if not self.is_file and "://" not in device:
            self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read(self, timeout_s: float) -> Frame | None:
        ok, pixels = self.capture.read()
        if not ok or pixels is None:
            if self.is_file:
                raise SourceEnded(f"reached the end of {self.device} after {self.count} frames")
            raise SourceFault(f"'{self.device}': no frame (camera unplugged or stream dropped)", key="source.device")
        self.count += 1
        # A monochrome camera gives one channel, or (OpenCV converting to BGR, its default) three equal ones:
        # kept as they come, the model folder's colour mode judges them (runtime.colour).
        return Frame(pixels, f"{Path(self.device).name if self.is_file else 'opencv'}#{self.count}", time.monotonic())

    def close(self) -> None:
        self.capture.release()  # releasing twice is harmless
