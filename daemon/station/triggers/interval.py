"""``[trigger] kind = "interval"``: take a frame every ``interval_ms``, on a fixed schedule (a late frame does not shift the next)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from inspectd.daemon.gpio import GpioBackend
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.triggers.interface import Trigger, TriggerConfig


@dataclass
class IntervalConfig(TriggerConfig):
    kind: ClassVar[str] = "interval"

    interval_ms: float = setting(1000.0, above=0, fix="one frame every N milliseconds, e.g. 1000")

    def open(self, gpio: GpioBackend | None) -> Trigger:
        return IntervalTrigger(self.interval_ms)


class IntervalTrigger:
    def __init__(self, interval_ms: float) -> None:
        self.interval_s = interval_ms / 1000.0
        self.due = time.monotonic()

    def wait(self, timeout_s: float) -> bool:
        now = time.monotonic()
        if now < self.due:
            time.sleep(min(timeout_s, self.due - now))
            if time.monotonic() < self.due:
                return False
        # Skip slots already missed rather than firing a burst to catch up.
        self.due += self.interval_s * max(1, int((time.monotonic() - self.due) / self.interval_s) + 1)
        return True

    def close(self) -> None:
        pass
