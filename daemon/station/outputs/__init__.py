"""Where verdicts go. One module per output, each with its config section and its class:
``journal`` and ``archive`` (software, opened by the pipeline), ``reject`` (the GPIO reject
line, opened with the devices) and ``memory`` (for tests and embedding). ``Fanout`` hands each
verdict and event to all of them, in order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from inspectd.daemon.station.outputs.interface import (EventKind, Fault, Notice, Output, OutputConfig, describe, error_name,
                                                       printable)
from inspectd.daemon.station.verdict import FrameVerdict

__all__ = ["EventKind", "Fanout", "Fault", "Notice", "Output", "OutputConfig", "describe", "error_name", "name_of", "printable"]

LAST_RESORT_CHARS = 2000


def name_of(output: object) -> str:
    return getattr(output, "name", None) or type(output).__name__


class Fanout:
    """Every output, in order: the reject line first (the PLC waits), the archive before the
    journal (it names the file the journal record points to), embedders' outputs last.

    An output that raises never keeps the verdict or the record from the others: once all had
    it, its exception becomes a fault record (INSPECTD_FAULT=output) sent to every output. When
    an output cannot take even a fault record, the fault goes to stderr, one line (under
    systemd, the unit's own stream into the journal).
    """

    def __init__(self, outputs: Sequence[Output], stream: TextIO | None = None) -> None:
        self.outputs = list(outputs)
        self.stream = stream  # None: sys.stderr as it is when a line is written

    def verdict(self, verdict: FrameVerdict) -> None:
        for output, exc in self._deliver(lambda output: output.verdict(verdict)):
            self.fault(Fault.OUTPUT, f"{name_of(output)} could not take frame {verdict.frame}'s {verdict.verdict}: {describe(exc)}", exc)

    def event(self, kind: EventKind, message: str, **fields: object) -> None:
        for output, exc in self._deliver(lambda output: output.event(kind, message, **fields)):
            if kind is EventKind.FAULT:  # reporting it as a fault again could fail again: stderr
                self.last_resort(f"{name_of(output)} could not record the fault '{message}': {describe(exc)}")
            else:
                self.fault(Fault.OUTPUT, f"{name_of(output)} could not record the {kind} record '{message}': {describe(exc)}", exc)

    def fault(self, where: Fault, message: str, exc: BaseException | None = None, **fields: object) -> None:
        """A fault record: INSPECTD_FAULT is ``where``, INSPECTD_ERROR the exception's type."""
        if exc is not None:
            fields.setdefault("error", error_name(exc))
        self.event(EventKind.FAULT, message, fault=where, **fields)

    def notice(self, notice: Notice) -> None:
        self.event(notice.kind, notice.message, **notice.fields)

    def last_resort(self, text: str) -> None:
        try:
            print(f"inspectd: {printable(text, LAST_RESORT_CHARS)}", file=self.stream or sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - stderr closed too: nothing is left to tell
            pass

    def _deliver(self, call: Callable[[Output], None]) -> list[tuple[Output, Exception]]:
        failed = []
        for output in self.outputs:
            try:
                call(output)
            except Exception as exc:  # noqa: BLE001 - the fault boundary of the outputs
                failed.append((output, exc))
        return failed
