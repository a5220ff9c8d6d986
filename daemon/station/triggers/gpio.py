"""``[trigger] kind = "gpio"``: take a frame when the part-present sensor on a GPIO line sees a part."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.gpio import BIASES, GpioBackend
from inspectd.daemon.gpio.sensor import PartSensor
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.triggers.interface import Trigger, TriggerConfig


@dataclass
class GpioTriggerConfig(TriggerConfig):
    kind: ClassVar[str] = "gpio"
    needs_gpio: ClassVar[bool] = True
    frames_on_demand: ClassVar[bool] = True

    line: str = ""  # the sensor's line name or offset
    active_low: bool = False
    bias: str = setting("disabled", choices=BIASES)
    debounce_ms: float = setting(20.0, minimum=0, fix="edges closer than this many milliseconds are contact bounce, e.g. 20")

    def check(self) -> None:
        if not self.line:
            raise ConfigError("is required for a gpio trigger", key="line", fix='name the part-present sensor\'s line, e.g. line = "GPIO22"')

    def lines(self) -> dict[str, str]:
        return {"line": self.line}

    def open(self, gpio: GpioBackend | None) -> Trigger:
        assert gpio is not None, "Config.check refuses a gpio trigger without [gpio]"
        line = gpio.input(self.line, active_low=self.active_low, bias=self.bias, consumer="inspectd-trigger", key="trigger.line")
        return GpioTrigger(PartSensor(line, self.debounce_ms))


class GpioTrigger:
    def __init__(self, sensor: PartSensor) -> None:
        self.sensor = sensor

    def wait(self, timeout_s: float) -> bool:
        return self.sensor.wait(timeout_s) is not None

    def close(self) -> None:
        self.sensor.close()
