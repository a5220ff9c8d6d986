"""Where verdicts go. One module per output, each with its config section and its class:
``journal`` and ``archive`` (software, opened by the pipeline), ``reject`` (the GPIO reject
line, opened with the devices) and ``memory`` (for tests and embedding). ``Fanout`` hands each
verdict and event to all of them, in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspectd.daemon.station.outputs.interface import EventKind, Output, OutputConfig
from inspectd.daemon.station.verdict import FrameVerdict

__all__ = ["EventKind", "Fanout", "Output", "OutputConfig"]


class Fanout:
    """Every output, in order: the reject line first (the PLC waits), the archive before the
    journal (it names the file the journal record points to), embedders' outputs last."""

    def __init__(self, outputs: Sequence[Output]) -> None:
        self.outputs = list(outputs)

    def verdict(self, verdict: FrameVerdict) -> None:
        for output in self.outputs:
            output.verdict(verdict)

    def event(self, kind: EventKind, message: str, **fields: object) -> None:
        for output in self.outputs:
            output.event(kind, message, **fields)
