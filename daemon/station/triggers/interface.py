"""What every trigger shares. A trigger decides when to take a frame.

The capture thread calls ``wait(timeout_s)`` with a short timeout so that, when no part
comes, the inspection loop still gets control back to tick the heartbeat and the systemd
watchdog: a trigger never blocks longer than ``timeout_s``. ``close()`` may be called twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from inspectd.daemon.gpio import GpioBackend
from inspectd.daemon.station.settings import Section


class Trigger(Protocol):
    def wait(self, timeout_s: float) -> bool:
        """True: take a frame now. False: nothing within ``timeout_s`` (the caller ticks and asks again)."""

    def close(self) -> None:
        """Release whatever the trigger holds (a GPIO line). Idempotent."""


@dataclass
class TriggerConfig(Section):
    kind: ClassVar[str]
    streams: ClassVar[bool] = False  # consecutive frames show the same part (what decision.confirm needs)
    needs_gpio: ClassVar[bool] = False  # its line comes from the [gpio] chip
    frames_on_demand: ClassVar[bool] = False  # frames only when a part comes (READY=1 cannot wait for one)

    def lines(self) -> dict[str, str]:
        """The GPIO lines it takes, by key (Config.gpio_lines): none unless it reads a sensor."""
        return {}

    def open(self, gpio: GpioBackend | None) -> Trigger:
        raise NotImplementedError
