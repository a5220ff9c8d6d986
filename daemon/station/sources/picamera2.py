"""``[source] kind = "picamera2"``: the Raspberry Pi camera (Camera Module 3) through picamera2,
which comes from the OS (``apt install python3-picamera2``; a venv needs ``--system-site-packages``).

Fixed resolution; auto exposure, gain and white balance run for ``settle_ms`` and are then
locked at the values they reached: a drifting auto-exposure moves PaDiM scores.
This module stays thin: it cannot run off a Pi.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from inspectd.daemon.errors import SourceError
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.sources.interface import Frame, Source, SourceConfig, SourceFault

SETTLE_MAX_MS = 30_000
SIZE_FIX = "the capture size in pixels, e.g. width = 1536, height = 864"


@dataclass
class Picamera2Config(SourceConfig):
    kind: ClassVar[str] = "picamera2"
    modules: ClassVar[tuple[str, ...]] = ("picamera2",)
    module_fix: ClassVar[str] = "apt install python3-picamera2 and create the venv with --system-site-packages"

    width: int = setting(1536, above=0, fix=SIZE_FIX)
    height: int = setting(864, above=0, fix=SIZE_FIX)
    # At most SETTLE_MAX_MS: the first frame, and READY=1, come after it, within the unit's TimeoutStartSec (120 s).
    settle_ms: int = setting(1500, minimum=0, maximum=SETTLE_MAX_MS,
                             fix=f"milliseconds for exposure and white balance to settle before they are locked; at most {SETTLE_MAX_MS}")

    def open_kind(self) -> Source:
        return Picamera2Source(self.width, self.height, self.settle_ms)

    def frame_size(self) -> tuple[int, int]:
        return self.width, self.height

    def camera_device(self) -> bool:
        return True

    def preflight(self, notes: list[str]) -> Frame | None:
        super().preflight([])  # the module is there (the camera itself is not opened)
        notes.append(f"source: camera not opened (a running daemon may hold it); {self.width}x{self.height} set, the ROI checked "
                      "against that size; `inspectd doctor` lists the cameras")
        return None


class Picamera2Source:
    def __init__(self, width: int, height: int, settle_ms: int) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError("the picamera2 module is missing", key="source.kind",
                              fix="apt install python3-picamera2 and create the venv with --system-site-packages") from None
        self.name, self.count, self.closed = "picamera2", 0, False
        try:
            self.camera = Picamera2()
            # "RGB888" is B, G, R in memory: OpenCV's order, what a colour model folder expects. A monochrome
            # sensor gives the same format with three equal channels, which a gray model folder takes (runtime.colour).
            self.camera.configure(self.camera.create_video_configuration(main={"size": (width, height), "format": "RGB888"}))
            self.camera.start()
            time.sleep(settle_ms / 1000.0)
            settled = self.camera.capture_metadata()
            locked = {"AeEnable": False, "ExposureTime": settled["ExposureTime"], "AnalogueGain": settled["AnalogueGain"]}
            if "ColourGains" in settled:  # a monochrome sensor has no white balance to lock
                locked.update(AwbEnable=False, ColourGains=settled["ColourGains"])
            self.camera.set_controls(locked)
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceFault(f"camera not available ({exc})", key="source.kind", fix="check the ribbon cable and `rpicam-hello`") from None

    def read(self, timeout_s: float) -> Frame | None:
        try:
            pixels = self.camera.capture_array("main")
        except RuntimeError as exc:
            raise SourceFault(f"picamera2 capture failed ({exc})") from None
        self.count += 1
        return Frame(pixels[:, :, :3], f"picamera2#{self.count}", time.monotonic())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.camera.close()
