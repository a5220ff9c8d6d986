"""Triggers: when to take a frame. One module per kind, each with its config section and its
class; ``[trigger] kind`` chooses one from ``TRIGGERS``:

- ``continuous``: every loop iteration, as fast as the model allows;
- ``interval``: on a fixed schedule (``interval_ms``);
- ``gpio``: on an edge from a part-present sensor (``line``).
"""

from __future__ import annotations

from inspectd.daemon.station.registry import Registry
from inspectd.daemon.station.triggers.continuous import ContinuousConfig
from inspectd.daemon.station.triggers.gpio import GpioTriggerConfig
from inspectd.daemon.station.triggers.interface import Trigger, TriggerConfig
from inspectd.daemon.station.triggers.interval import IntervalConfig

TRIGGERS = Registry("trigger", ContinuousConfig, IntervalConfig, GpioTriggerConfig)

__all__ = ["TRIGGERS", "ContinuousConfig", "GpioTriggerConfig", "IntervalConfig", "Trigger", "TriggerConfig"]
