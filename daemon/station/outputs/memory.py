"""An in-memory output: keeps every verdict and event. For tests and for embedding inspectd."""

from __future__ import annotations

import threading

from inspectd.daemon.station.verdict import Verdict


class MemoryOutput:
    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []
        self.events: list[tuple[str, str, dict]] = []
        self.closed = False
        self.changed = threading.Condition()

    def verdict(self, verdict: Verdict) -> None:
        with self.changed:
            self.verdicts.append(verdict)
            self.changed.notify_all()

    def event(self, kind: str, message: str, **fields: object) -> None:
        with self.changed:
            self.events.append((kind, message, fields))
            self.changed.notify_all()

    def wait_for(self, predicate, timeout_s: float = 30.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout_s)

    def close(self) -> None:
        self.closed = True
