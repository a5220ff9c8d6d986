"""What touches hardware: the GPIO chip, its reject and ready lines, and the trigger.

Opened once at start and again on a reload only when ``[source]``, ``[trigger]`` or
``[gpio]`` changed (reopening lines glitches them, and the PLC would see it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspectd.daemon.errors import ConfigError, GpioError
from inspectd.daemon.gpio import GpioBackend, open_backend
from inspectd.daemon.gpio.heartbeat import Heartbeat
from inspectd.daemon.station.config import Config
from inspectd.daemon.station.outputs import Output
from inspectd.daemon.station.outputs.reject import RejectOutput
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
        raise as_config_error(error, config) from None
    except BaseException:
        devices.close()
        raise
    return devices


def check_chip(config: Config) -> None:
    """Open the configured chip and close it again, for ``inspectd check``. Its lines are not
    requested: a running daemon holds them."""
    if config.gpio is not None:
        try:
            open_backend(config.gpio.chip).close()
        except GpioError as error:
            raise as_config_error(error, config) from None


def as_config_error(error: GpioError, config: Config) -> ConfigError:
    """A chip or line the configuration names and this machine cannot give (absent, taken, not permitted):
    restarting will not change that, so it stops the service like any configuration error (exit 78)."""
    return ConfigError(error.problem, file=config.file, key=error.key, fix=error.fix)
