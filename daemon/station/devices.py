"""What touches hardware: the GPIO chip, its reject and ready lines, and the trigger.

Opened once at start and again on a reload only when ``[source]``, ``[trigger]`` or
``[gpio]`` changed (reopening lines glitches them, and the PLC would see it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspectd.daemon.errors import ConfigError, GpioError
from inspectd.daemon.gpio import GpioBackend, holder, open_backend
from inspectd.daemon.gpio.heartbeat import Heartbeat
from inspectd.daemon.gpio.reservations import Reservations
from inspectd.daemon.station.config import Config
from inspectd.daemon.station.outputs import Output
from inspectd.daemon.station.outputs.reject import RejectOutput
from inspectd.daemon.station.settings import raise_all
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


def check_gpio(config: Config, *, daemon_may_run: bool = True) -> list[str]:
    """For ``inspectd check``: open the configured chip and read the info of each configured line (present, free),
    without requesting one. ``daemon_may_run``: a line held by an inspectd is expected (a new configuration checked
    before a reload); otherwise it is an error, as requesting it would be. Returns what was found, one line each."""
    if config.gpio is None:
        return []
    errors: list[ConfigError] = []
    found = []
    offsets = Reservations()  # a name and an offset can be the same line: only the chip knows
    try:
        chip = open_backend(config.gpio.chip)
    except GpioError as error:
        raise as_config_error(error, config) from None
    try:
        for key, line in config.gpio_lines():
            try:
                info = chip.line_info(line, key=key)
            except GpioError as error:
                errors.append(as_config_error(error, config))
                continue
            first = offsets.reserve(info.offset, key) if info.offset >= 0 else None
            if first is not None:
                errors.append(ConfigError(f"{line!r} is offset {info.offset} on this chip, the line of {first}",
                                          file=config.file, key=key, fix="each line can be used once: choose another line"))
                continue
            if info.used and not (daemon_may_run and info.consumer.startswith("inspectd")):
                errors.append(ConfigError(f"line {line!r} (offset {info.offset}) is in use by "
                                          f"{holder(info.consumer) if info.consumer else repr('a kernel driver')}",
                                          file=config.file, key=key, fix="stop it (or free the pin in config.txt) or choose another line"))
            else:
                held = f", held by {info.consumer} (the running daemon)" if info.used else ", free"
                found.append(f"{key} {line!r}{held}")
    finally:
        chip.close()
    raise_all(errors)
    return [f"gpio: chip {config.gpio.chip!r} opened; lines not requested: {'; '.join(found) or 'none configured'}"]


def as_config_error(error: GpioError, config: Config) -> ConfigError:
    """A chip or line the configuration names and this machine cannot give (absent, taken, not permitted):
    restarting will not change that, so it stops the service like any configuration error (exit 78)."""
    return ConfigError(error.problem, file=config.file, key=error.key, fix=error.fix)
