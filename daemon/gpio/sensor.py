"""Take a frame when a part-present sensor's GPIO line goes active."""

from __future__ import annotations

import time

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.gpio import InputLine


class GpioTrigger:
    """True from ``wait`` once per part: on the edge to ACTIVE of ``line``, debounced.

    Debouncing is done here, in software, on the edges' kernel timestamps, so it is the same
    on every backend and chip: an edge less than ``debounce_ms`` after the last *accepted*
    edge is contact bounce and is ignored. The first edge of a burst fires at once, so
    debouncing adds no latency. Edges are queued while the loop is busy, so a part that
    arrives during an inference is not lost; ``last_edge_s`` (time.monotonic()) says when
    the accepted edge happened, to measure how late the frame was taken.

    GpioTrigger owns the line: ``close`` releases it.

        >>> from inspectd.daemon.gpio import open_backend
        >>> gpio = open_backend("memory")
        >>> trigger = GpioTrigger(gpio.input("GPIO27", bias="pull-down", consumer="inspectd-trigger"), debounce_ms=20)
        >>> for level in (True, False, True, False, True):   # one part, a bouncy contact
        ...     gpio.drive("GPIO27", level)
        >>> trigger.wait(1.0), trigger.wait(0.05)
        (True, False)
        >>> trigger.close()
    """

    def __init__(self, line: InputLine, debounce_ms: float) -> None:
        if debounce_ms < 0:
            raise InspectdError(f"trigger.debounce_ms: must not be negative, not {debounce_ms!r}")
        self._line = line
        self.debounce_s = debounce_ms / 1000.0
        self.last_edge_s: float | None = None

    def wait(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            edge = self._line.wait_edge(max(0.0, deadline - time.monotonic()))
            if edge is None:
                return False
            if self.last_edge_s is not None and edge - self.last_edge_s < self.debounce_s:
                continue
            self.last_edge_s = edge
            return True

    def close(self) -> None:
        self._line.close()
