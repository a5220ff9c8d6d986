"""``[gpio.reject]``: the reject line as an output, a GPIO pulse of its full width for each REJECT, whatever follows."""

from __future__ import annotations

from dataclasses import dataclass

from inspectd.daemon.gpio import GpioBackend
from inspectd.daemon.gpio.reject import RejectPulse
from inspectd.daemon.station.outputs.interface import EventKind
from inspectd.daemon.station.settings import Section, setting
from inspectd.daemon.station.verdict import FrameVerdict


PULSE_MAX_MS = 2000


@dataclass
class RejectLineConfig(Section):
    line: str = ""  # line name or offset; "" for no reject line
    active_low: bool = False
    # At most PULSE_MAX_MS: a stop lets the pulse that is on run its full width, and the stop must end within the unit's
    # TimeoutStopSec (15 s) after its other steps (loop.STOP_BUDGET_S); a reject gate needs tens to hundreds of ms.
    pulse_ms: float = setting(100.0, above=0, maximum=PULSE_MAX_MS,
                              fix=f"the pulse length in milliseconds the PLC needs, e.g. 100; at most {PULSE_MAX_MS}, which a stop "
                                  "waits for within the unit's stop timeout")

    def lines(self) -> dict[str, str]:
        """The GPIO lines it takes, by key (Config.gpio_lines)."""
        return {"line": self.line}

    def open(self, gpio: GpioBackend) -> RejectOutput | None:
        if not self.line:
            return None
        line = gpio.output(self.line, active_low=self.active_low, consumer="inspectd-reject", key="gpio.reject.line")
        return RejectOutput(RejectPulse(line, self.pulse_ms))


class RejectOutput:
    """
        >>> from inspectd.daemon.gpio import open_backend
        >>> gpio = open_backend("memory")
        >>> output = RejectLineConfig(line="GPIO17").open(gpio)
        >>> output.event(EventKind.FAULT, "camera gone"); gpio.level("GPIO17")
        False
        >>> output.close(); output.close()

    A fault after a REJECT never shortens its pulse: the part was judged, the PLC must see it.
    """

    name = "reject line"

    def __init__(self, pulse: RejectPulse) -> None:
        self.pulse = pulse

    def verdict(self, verdict: FrameVerdict) -> None:
        if verdict.rejected:
            self.pulse.pulse()

    def event(self, kind: EventKind, message: str, **fields: object) -> None:
        pass

    def close(self) -> None:
        self.pulse.close()
