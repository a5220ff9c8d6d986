"""The reject pulse: a GPIO line the PLC or reject gate watches, pulsed once per REJECT."""

from __future__ import annotations

import threading
import time

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.gpio import OutputLine
from inspectd.daemon.station.verdict import Verdict


class RejectPulse:
    """Drive ``line`` active for ``width_ms`` on every REJECT; PASS never touches it.

    The line goes active as soon as the verdict arrives and a timer thread (one for the
    object's lifetime) turns it off ``width_ms`` later, so ``verdict`` never blocks the
    inspection loop. A REJECT that arrives while a pulse is on **extends** that pulse to
    ``width_ms`` after the newest REJECT: the PLC sees one long pulse, never a
    sub-millisecond off-glitch it might miss or count twice. A PLC that counts pulses to
    count rejects therefore needs parts spaced more than ``width_ms`` apart; choose the
    width accordingly. A ``fault`` event and ``close`` drop the line at once. If the process
    is killed mid-pulse the line keeps its level (libgpiod does not reset released lines):
    the PLC learns that from the ready line (see ``Heartbeat``) and should ignore a reject
    line held longer than a few widths.

    RejectPulse owns the line: ``close`` releases it, inactive.

        >>> from inspectd.daemon.gpio import open_backend
        >>> gpio = open_backend("memory")
        >>> reject = RejectPulse(gpio.output("GPIO17", consumer="inspectd-reject"), width_ms=100)
        >>> reject.pulse()                          # what verdict() does for a REJECT
        >>> gpio.level("GPIO17")
        True
        >>> reject.close()                          # inactive now, even mid-pulse
        >>> gpio.level("GPIO17")
        False
    """

    def __init__(self, line: OutputLine, width_ms: float) -> None:
        if not width_ms > 0:
            raise InspectdError(f"gpio.reject.pulse_ms: must be a positive number of milliseconds, not {width_ms!r}")
        self._line = line
        self.width_s = width_ms / 1000.0
        self._cond = threading.Condition()
        self._off_at: float | None = None  # time.monotonic() when the pulse ends; None: line inactive
        self._closed = False
        self._timer = threading.Thread(target=self._run, name="inspectd-reject-pulse", daemon=True)
        self._timer.start()

    def verdict(self, verdict: Verdict) -> None:
        if verdict.rejected:
            self.pulse()

    def event(self, kind: str, message: str, **fields: object) -> None:
        if kind == "fault":
            self.cancel()

    def pulse(self) -> None:
        """Start a pulse, or extend the one that is on."""
        with self._cond:
            if self._closed:
                return
            if self._off_at is None:
                self._line.set(True)
            self._off_at = time.monotonic() + self.width_s
            self._cond.notify()

    def cancel(self) -> None:
        """End any pulse now."""
        with self._cond:
            if self._off_at is not None and not self._closed:
                self._line.set(False)
                self._off_at = None
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._off_at = None
            self._cond.notify()
        self._timer.join()
        self._line.close()  # drives it inactive, then releases it

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._off_at is None:
                    self._cond.wait()
                    continue
                remaining = self._off_at - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._line.set(False)
                self._off_at = None
