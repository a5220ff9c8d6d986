"""Take a frame when the part-present sensor on a GPIO line sees a part."""

from __future__ import annotations

from inspectd.daemon.gpio.sensor import PartSensor


class GpioTrigger:
    def __init__(self, sensor: PartSensor) -> None:
        self.sensor = sensor

    def wait(self, timeout_s: float) -> bool:
        return self.sensor.wait(timeout_s) is not None

    def close(self) -> None:
        self.sensor.close()
