"""``[trigger] kind = "continuous"``: take frames as fast as the model allows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from inspectd.daemon.gpio import GpioBackend
from inspectd.daemon.station.triggers.interface import Trigger, TriggerConfig


@dataclass
class ContinuousConfig(TriggerConfig):
    kind: ClassVar[str] = "continuous"
    streams: ClassVar[bool] = True

    def open(self, gpio: GpioBackend | None) -> Trigger:
        return ContinuousTrigger()


class ContinuousTrigger:
    def wait(self, timeout_s: float) -> bool:
        return True

    def close(self) -> None:
        pass
