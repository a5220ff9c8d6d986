"""Frames already in memory, replayed once or in a loop: for tests, benchmarks and embedding
(pass ``open_source=lambda config: MemorySource(frames)`` to the Station; not a configurable kind)."""

from __future__ import annotations

import time

import numpy as np

from inspectd.daemon.station.sources.interface import Frame, SourceEnded


class MemorySource:
    def __init__(self, frames: list[np.ndarray], loop: bool = False) -> None:
        self.frames, self.loop, self.position = frames, loop, 0
        self.name = "memory"

    def read(self, timeout_s: float) -> Frame | None:
        if self.position == len(self.frames):
            if not self.loop:
                raise SourceEnded(f"replayed all {len(self.frames)} frames")
            self.position = 0
        self.position += 1
        return Frame(self.frames[self.position - 1], f"memory#{self.position}", time.monotonic())

    def close(self) -> None:
        pass
