"""The reject line as an output: a GPIO pulse for each REJECT, dropped at once on a fault."""

from __future__ import annotations

from inspectd.daemon.gpio.reject import RejectPulse
from inspectd.daemon.station.verdict import Verdict


class RejectOutput:
    """
        >>> from inspectd.daemon.gpio import open_backend
        >>> gpio = open_backend("memory")
        >>> output = RejectOutput(RejectPulse(gpio.output("GPIO17"), width_ms=100))
        >>> output.event("fault", "camera gone"); gpio.level("GPIO17")
        False
        >>> output.close(); output.close()
    """

    def __init__(self, pulse: RejectPulse) -> None:
        self.pulse = pulse

    def verdict(self, verdict: Verdict) -> None:
        if verdict.rejected:
            self.pulse.pulse()

    def event(self, kind: str, message: str, **fields: object) -> None:
        if kind == "fault":
            self.pulse.cancel()  # whatever was on its way out is no longer known to be bad

    def close(self) -> None:
        self.pulse.close()
