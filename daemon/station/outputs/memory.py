"""An in-memory output: keeps every verdict and event. For tests and for embedding inspectd."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

from inspectd.daemon.station.outputs.interface import EventKind
from inspectd.daemon.station.verdict import FrameVerdict


class Event(NamedTuple):
    kind: EventKind
    message: str
    fields: dict[str, object]


class MemoryOutput:
    name = "memory"

    def __init__(self) -> None:
        self.verdicts: list[FrameVerdict] = []
        self.events: list[Event] = []
        self.closed = False
        self.changed = threading.Condition()

    def verdict(self, verdict: FrameVerdict) -> None:
        with self.changed:
            self.verdicts.append(verdict)
            self.changed.notify_all()

    def event(self, kind: EventKind, message: str, **fields: object) -> None:
        with self.changed:
            self.events.append(Event(kind, message, fields))
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[MemoryOutput], bool], timeout_s: float = 30.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout_s)

    def close(self) -> None:
        self.closed = True
