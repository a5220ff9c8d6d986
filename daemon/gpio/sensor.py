"""The part-present sensor: an input line that goes active when a part arrives."""

from __future__ import annotations

import math
import time

from inspectd.daemon.gpio import InputLine


class PartSensor:
    """One accepted edge to ACTIVE of ``line`` per part, debounced.

    Debouncing is done here, in software, on the edges' kernel timestamps, so it is the same
    on every backend and chip: an edge less than ``debounce_ms`` after the last *accepted*
    edge is contact bounce and is ignored. The first edge of a burst is accepted at once, so
    debouncing adds no latency. Edges are queued while the caller is busy, so a part that
    arrives during an inference is not lost.

    PartSensor owns the line: ``close`` releases it (and wakes a ``wait`` in another thread).

        >>> from inspectd.daemon.gpio import open_backend
        >>> gpio = open_backend("memory")
        >>> sensor = PartSensor(gpio.input("GPIO27", bias="pull-down", consumer="inspectd-trigger"), debounce_ms=20)
        >>> for level in (True, False, True, False, True):   # one part, a bouncy contact
        ...     gpio.drive("GPIO27", level)
        >>> sensor.wait(1.0) is not None, sensor.wait(0.05)
        (True, None)
        >>> sensor.close()
    """

    def __init__(self, line: InputLine, debounce_ms: float) -> None:
        if not (math.isfinite(debounce_ms) and debounce_ms >= 0):
            raise ValueError(f"debounce_ms must be a number of milliseconds >= 0, not {debounce_ms!r}")
        self._line = line
        self.debounce_s = debounce_ms / 1000.0
        self.last_edge_s: float | None = None

    def wait(self, timeout_s: float) -> float | None:
        """The time.monotonic() of the next part's edge, or None when none came within ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            edge = self._line.wait_edge(max(0.0, deadline - time.monotonic()))
            if edge is None:
                return None
            if self.last_edge_s is not None and edge - self.last_edge_s < self.debounce_s:
                continue
            self.last_edge_s = edge
            return edge

    def close(self) -> None:
        self._line.close()  # idempotent
