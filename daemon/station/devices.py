"""What touches hardware: the GPIO chip, its reject and ready lines, and the trigger.

Opened once at start and again on a reload only when ``[source]``, ``[trigger]`` or
``[gpio]`` changed (reopening lines glitches them, and the PLC would see it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspectd.daemon.errors import GpioError
from inspectd.daemon.gpio import GpioBackend, open_backend
from inspectd.daemon.gpio.heartbeat import Heartbeat
from inspectd.daemon.station.config import Config
from inspectd.daemon.station.outputs import Output
from inspectd.daemon.station.outputs.reject import RejectOutput
from inspectd.daemon.station.settings import located
from inspectd.daemon.station.triggers import Trigger


@dataclass
class Devices:
    trigger: Trigger | None = None
    gpio: GpioBackend | None = None
    reject: RejectOutput | None = None
    heartbeat: Heartbeat | None = None
    closed: bool = field(default=False, repr=False)

    @property
    def outputs(self) -> list[Output]:
        return [self.reject] if self.reject is not None else []

    def close(self) -> None:
        """The trigger first (it may hold a line), then the lines (inactive), then the chip. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for part in (self.trigger, self.reject, self.heartbeat, self.gpio):
            if part is not None:
                part.close()


def open_devices(config: Config) -> Devices:
    devices = Devices()
    try:
        if config.gpio is not None:
            devices.gpio = open_backend(config.gpio.chip)
            devices.reject = config.gpio.reject.open(devices.gpio)
            devices.heartbeat = config.gpio.ready.open(devices.gpio)
        devices.trigger = config.trigger.open(devices.gpio)
    except GpioError as error:
        devices.close()
        raise located(error, config.file) from None
    except BaseException:
        devices.close()
        raise
    return devices
