"""Where verdicts go. Each output is one module with one class implementing ``Output``."""

from __future__ import annotations

from typing import Protocol

from inspectd.daemon.station.verdict import Verdict


class Output(Protocol):
    def verdict(self, verdict: Verdict) -> None:
        """Called once per inspected frame, in frame order."""

    def event(self, kind: str, message: str, **fields: object) -> None:
        """A service event: kind is one of start, stop, reload, fault, summary."""

    def close(self) -> None:
        """Release resources and put hardware in its safe state."""
