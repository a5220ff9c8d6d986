"""The ready line: a square wave that tells the PLC the inspector is alive and inspecting."""

from __future__ import annotations

import math
import threading

from inspectd.daemon.gpio import OutputLine


class Heartbeat:
    """A square wave of ``period_ms`` on ``line``, advanced only by the inspection loop.

    PLC side: **no edge for more than ``period_ms`` means the inspector is down** (hung,
    faulted, stopped or dead): stop the line or divert parts. A steady level, high or low,
    never means "alive": libgpiod leaves a line at its last level when the process dies,
    so a level alone would survive a crash.

    There is deliberately no thread here: ``tick(now)`` toggles the line when at least half a
    period has passed since the last toggle, so a hung loop stops the wave by itself. Call
    ``tick`` at least every ``max_tick_interval_s`` (half a period), e.g. by waiting on the
    trigger with a timeout of a quarter period; edges then come every period/2 to period.
    ``fault()`` holds the line inactive until ``healthy()``; ``close()`` leaves it inactive.

        >>> from inspectd.daemon.gpio import open_backend
        >>> gpio = open_backend("memory")
        >>> beat = Heartbeat(gpio.output("GPIO22", consumer="inspectd-ready"), period_ms=500)
        >>> for now in (0.0, 0.1, 0.25, 0.5, 0.6, 0.75):
        ...     beat.tick(now)
        >>> [active for _, active in gpio.history("GPIO22")]   # toggled at 0.0, 0.25, 0.5 and 0.75
        [False, True, False, True, False]
        >>> beat.fault(); beat.tick(1.0); gpio.level("GPIO22")
        False
        >>> beat.close()
    """

    def __init__(self, line: OutputLine, period_ms: float = 500) -> None:
        if not (math.isfinite(period_ms) and period_ms > 0):
            raise ValueError(f"period_ms must be a positive number of milliseconds, not {period_ms!r}")
        self._line = line
        self.period_s = period_ms / 1000.0
        self._lock = threading.Lock()  # fault() may come from another thread than tick()
        self._level = False
        self._last: float | None = None  # time of the last toggle; None: start on the next tick
        self._faulted = False
        self._closed = False

    @property
    def max_tick_interval_s(self) -> float:
        return self.period_s / 2

    def tick(self, now: float) -> None:
        """Called by the inspection loop with time.monotonic(); toggles when half a period is due."""
        with self._lock:
            if self._faulted or self._closed:
                return
            if self._last is not None and now - self._last < self.period_s / 2:
                return
            # Measured from now, not from the previous due time: after a stall the wave
            # resumes without a burst of catch-up edges, so the PLC sees the gap.
            # The state changes only once the line took the level: a write that fails is tried
            # again on every tick (a tick that skipped the write must not pass for a working line).
            self._line.set(not self._level)
            self._last = now
            self._level = not self._level

    def fault(self) -> None:
        """Stop signalling, inactive, until ``healthy()``."""
        with self._lock:
            self._faulted = True
            self._set_inactive()

    def healthy(self) -> None:
        """Resume: the next tick starts the wave again."""
        with self._lock:
            self._faulted = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._set_inactive()
            self._line.close()

    def _set_inactive(self) -> None:
        if self._level:
            self._line.set(False)
        self._level = False
        self._last = None
