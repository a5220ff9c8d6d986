"""What every output implements, and the kinds of service events it receives."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from inspectd.daemon.station.settings import Section
from inspectd.daemon.station.verdict import FrameVerdict


class EventKind(enum.StrEnum):
    """A service event (each has its journald MESSAGE_ID); compares and formats as its text."""

    START = "start"
    STOP = "stop"
    RELOAD = "reload"
    FAULT = "fault"
    SUMMARY = "summary"
    PRECISION = "precision"  # the model runs at a slower precision than asked: a faster one failed its self-test


class Output(Protocol):
    def verdict(self, verdict: FrameVerdict) -> None:
        """Called once per inspected frame, in frame order."""

    def event(self, kind: EventKind, message: str, **fields: object) -> None:
        """A service event; ``fields`` become INSPECTD_<NAME> journald fields."""

    def close(self) -> None:
        """Release resources and put hardware in its safe state. Idempotent."""


@dataclass
class OutputConfig(Section):
    """A software output's table: ``enabled`` plus the output's own keys."""

    enabled: bool = True

    def open(self, on_fault: Callable[[str], None]) -> Output:
        """``on_fault`` reports a problem found off the inspection loop (the archive's writer thread)."""
        raise NotImplementedError
