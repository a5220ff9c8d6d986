"""The reject pulse: a GPIO line the PLC or reject gate watches, pulsed once per rejected part."""

from __future__ import annotations

import math
import threading
import time

from inspectd.daemon.gpio import OutputLine


class RejectPulse:
    """Drive ``line`` active for ``width_ms`` on every ``pulse()``; nothing else touches it.

    The line goes active at once and a timer thread (one for the object's lifetime) turns it
    off ``width_ms`` later, so ``pulse`` never blocks the caller. A pulse that arrives while
    one is on **extends** it to ``width_ms`` after the newest: the PLC sees one long pulse,
    never a sub-millisecond off-glitch it might miss or count twice. A PLC that counts pulses
    to count rejects therefore needs parts spaced more than ``width_ms`` apart; choose the
    width accordingly. Nothing shortens a pulse: ``close`` (a stop, a reload that reopens
    the lines) waits for the pulse that is on to end, at most ``width_ms``, then releases the
    line inactive; a fault that follows a REJECT does not touch it (the part was seen and
    judged). If the process is killed mid-pulse the line keeps its level (libgpiod does not
    reset released lines): the PLC learns that from the ready line (see ``Heartbeat``) and
    should ignore a reject line held longer than a few widths.

    RejectPulse owns the line: ``close`` releases it, inactive.

        >>> from inspectd.daemon.gpio import open_backend
        >>> gpio = open_backend("memory")
        >>> reject = RejectPulse(gpio.output("GPIO17", consumer="inspectd-reject"), width_ms=100)
        >>> reject.pulse()
        >>> gpio.level("GPIO17")
        True
        >>> reject.close()                          # after the pulse has run its full width
        >>> [active for _, active in gpio.history("GPIO17")]
        [False, True, False]
    """

    def __init__(self, line: OutputLine, width_ms: float) -> None:
        if not (math.isfinite(width_ms) and width_ms > 0):
            raise ValueError(f"width_ms must be a positive number of milliseconds, not {width_ms!r}")
        self._line = line
        self.width_s = width_ms / 1000.0
        self._cond = threading.Condition()
        self._off_at: float | None = None  # time.monotonic() when the pulse ends; None: line inactive
        self._closed = False
        self._timer = threading.Thread(target=self._run, name="inspectd-reject-pulse", daemon=True)
        self._timer.start()

    def pulse(self) -> None:
        """Start a pulse, or extend the one that is on. Ignored after ``close``."""
        with self._cond:
            if self._closed:
                return
            if self._off_at is None:
                self._line.set(True)
            self._off_at = time.monotonic() + self.width_s
            self._cond.notify()

    def close(self) -> None:
        """No more pulses; the one that is on runs its full width, then the line is released inactive."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._timer.join()
        self._line.close()  # drives it inactive, then releases it

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._off_at is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    continue
                remaining = self._off_at - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._line.set(False)
                self._off_at = None
