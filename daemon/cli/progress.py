"""How far ``evaluate`` and ``calibrate`` have got through their images: redrawn in place on a terminal; in a log, at
every quarter and at least every 10 seconds."""

from __future__ import annotations

import sys
import time

EVERY_SECONDS = 10.0


class ImageCount:
    def __init__(self, command: str, stream=None) -> None:
        self.command, self.stream = command, stream or sys.stderr
        self.live = self.stream.isatty()
        self.printed, self.quarter = time.monotonic(), -1

    def __call__(self, done: int, total: int) -> None:
        if self.live:
            print(f"\r{self.command}: {done}/{total} images", end="\n" if done == total else "", file=self.stream, flush=True)
            return
        quarter = 4 * done // max(total, 1)
        if quarter != self.quarter or time.monotonic() - self.printed >= EVERY_SECONDS:
            self.quarter, self.printed = quarter, time.monotonic()
            print(f"{self.command}: {done}/{total} images", file=self.stream, flush=True)
