"""The Raspberry Pi camera (Camera Module 3) through picamera2, which comes from the OS
(``apt install python3-picamera2``; a venv needs ``--system-site-packages``).

Fixed resolution; auto exposure, gain and white balance run for ``settle_ms`` and are then
locked at the values they reached: a drifting auto-exposure moves PaDiM scores.
This module stays thin: it cannot run off a Pi.
"""

from __future__ import annotations

import time

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.station.sources import Frame, SourceFault


class Picamera2Source:
    def __init__(self, width: int, height: int, settle_ms: int) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise InspectdError("source.kind 'picamera2': the picamera2 module is missing; apt install python3-picamera2 "
                                "and create the venv with --system-site-packages") from None
        self.name, self.count = "picamera2", 0
        try:
            self.camera = Picamera2()
            # "RGB888" is B, G, R in memory: OpenCV's order, what the model folder expects.
            self.camera.configure(self.camera.create_video_configuration(main={"size": (width, height), "format": "RGB888"}))
            self.camera.start()
            time.sleep(settle_ms / 1000.0)
            settled = self.camera.capture_metadata()
            self.camera.set_controls({
                "AeEnable": False, "AwbEnable": False,
                "ExposureTime": settled["ExposureTime"], "AnalogueGain": settled["AnalogueGain"],
                "ColourGains": settled["ColourGains"],
            })
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceFault(f"source.kind 'picamera2': camera not available ({exc})") from None

    def read(self, timeout_s: float) -> Frame | None:
        try:
            pixels = self.camera.capture_array("main")
        except RuntimeError as exc:
            raise SourceFault(f"picamera2 capture failed ({exc})") from None
        self.count += 1
        return Frame(pixels[:, :, :3], f"picamera2#{self.count}", time.monotonic())

    def close(self) -> None:
        self.camera.close()
