"""MemoryGpio: a complete GPIO backend in memory, for tests and dry runs (``chip = "memory"``).

It behaves like a chip: a line is held by one request at a time, outputs start inactive and
go inactive when closed, inputs queue edges to ACTIVE from the moment they are requested.
It also records every level change so a test can measure pulses afterwards.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from inspectd.daemon.errors import GpioError
from inspectd.daemon.gpio import LineInfo, check_bias, line_id

EDGE_QUEUE = 256  # like the kernel's event buffer: when full, the oldest edge is dropped


@dataclass
class _Line:
    physical: bool = False  # the electrical level (True = high)
    active_low: bool = False
    consumer: str | None = None  # who holds the line, None when free
    direction: str | None = None  # "output" | "input" while held
    history: list[tuple[float, bool, bool]] = field(default_factory=list)  # (t, active, physical)
    edges: deque[float] = field(default_factory=lambda: deque(maxlen=EDGE_QUEUE))

    @property
    def active(self) -> bool:
        return self.physical != self.active_low


class MemoryGpio:
    """An in-memory GPIO chip with any number of lines, named or numbered as the caller likes.

    Outputs record each level change with its time.monotonic() timestamp; a test drives
    inputs with ``drive`` (from any thread) and reads outputs with ``level``, ``physical`` and
    ``history``.

        >>> gpio = MemoryGpio()
        >>> lamp = gpio.output("GPIO17", active_low=True, consumer="demo")
        >>> lamp.set(True)
        >>> gpio.level("GPIO17"), gpio.physical("GPIO17")
        (True, False)
        >>> [active for _, active in gpio.history("GPIO17")]   # requested inactive, then on
        [False, True]
        >>> sensor = gpio.input("GPIO27", bias="pull-down")
        >>> gpio.drive("GPIO27", True)
        >>> sensor.wait_edge(1.0) is not None, sensor.wait_edge(0.01)
        (True, None)
        >>> gpio.close()
        >>> gpio.level("GPIO17")
        False
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lines: dict[str | int, _Line] = {}
        self._held: list[_MemoryOutput | _MemoryInput] = []
        self._driven: set[str | int] = set()  # driven by a test: keep their level, whatever the bias

    # The backend interface.

    def output(self, line: str | int, *, active_low: bool = False, consumer: str = "inspectd", key: str | None = None) -> _MemoryOutput:
        name = line_id(line, key)
        with self._cond:
            state = self._claim(name, consumer, "output", active_low, key)
            self._record(state, active=False, force=True)
            handle = _MemoryOutput(self, name)
            self._held.append(handle)
            return handle

    def input(
        self, line: str | int, *, active_low: bool = False, bias: str = "as-is", consumer: str = "inspectd", key: str | None = None
    ) -> _MemoryInput:
        name = line_id(line, key)
        check_bias(bias, key)
        with self._cond:
            state = self._claim(name, consumer, "input", active_low, key)
            if name not in self._driven and bias in ("pull-up", "pull-down"):
                high = bias == "pull-up"  # nothing drives it: the pull decides
                self._record(state, active=high != active_low)
            state.edges.clear()
            handle = _MemoryInput(self, name)
            self._held.append(handle)
            return handle

    def line_info(self, line: str | int, *, key: str | None = None) -> LineInfo:
        name = line_id(line, key)
        with self._cond:
            consumer = self._lines[name].consumer if name in self._lines else None
        if isinstance(name, int):
            return LineInfo(name, "", consumer is not None, consumer or "")
        return LineInfo(-1, name, consumer is not None, consumer or "")

    def close(self) -> None:
        for handle in list(self._held):
            handle.close()

    # What a test reads and drives.

    def level(self, line: str | int) -> bool:
        """The logical level: True when active (in the polarity of its last request)."""
        with self._cond:
            return self._state(line).active

    def physical(self, line: str | int) -> bool:
        """The electrical level: True when high."""
        with self._cond:
            return self._state(line).physical

    def history(self, line: str | int, *, physical: bool = False) -> list[tuple[float, bool]]:
        """Every level change as (time.monotonic(), active), or (t, high) with physical=True.

        An output's history starts with its request (driven inactive); after that only real
        changes are recorded, so a glitch shows up as an extra pair of entries.
        """
        with self._cond:
            return [(t, high if physical else active) for t, active, high in self._state(line).history]

    def drive(self, line: str | int, active: bool) -> None:
        """Drive an input from outside (a sensor): an inactive -> active change queues an edge.

        ``active`` is in the polarity the line was requested with (active-high if it was not).
        """
        name = line_id(line, None)
        with self._cond:
            state = self._state(name)
            if state.direction == "output":
                raise ValueError(f"line {name!r} is an output of {state.consumer!r}; only inputs can be driven")
            self._driven.add(name)
            was = state.active
            self._record(state, active=active)
            if active and not was and state.direction == "input":
                state.edges.append(time.monotonic())
                self._cond.notify_all()

    # Internals shared with the line handles.

    def _state(self, line: str | int) -> _Line:
        return self._lines.setdefault(line_id(line, None), _Line())

    def _claim(self, name: str | int, consumer: str, direction: str, active_low: bool, key: str | None) -> _Line:
        state = self._state(name)
        if state.consumer is not None:
            raise GpioError(f"line {name!r} on memory is in use by {state.consumer!r}", key=key,
                            fix="each line can be requested once: choose another line")
        state.consumer, state.direction, state.active_low = consumer, direction, active_low
        return state

    def _record(self, state: _Line, *, active: bool, force: bool = False) -> None:
        physical = active != state.active_low
        if state.physical == physical and state.history and not force:
            return
        state.physical = physical
        state.history.append((time.monotonic(), active, physical))

    def _release(self, handle: _MemoryOutput | _MemoryInput) -> None:
        state = self._lines[handle.name]
        state.consumer = state.direction = None
        self._held.remove(handle)
        self._cond.notify_all()


class _MemoryOutput:
    def __init__(self, gpio: MemoryGpio, name: str | int) -> None:
        self._gpio, self.name, self._closed = gpio, name, False

    def set(self, active: bool) -> None:
        with self._gpio._cond:
            if self._closed:
                raise RuntimeError(f"output line {self.name!r} is closed")
            self._gpio._record(self._gpio._lines[self.name], active=bool(active))

    def close(self) -> None:
        with self._gpio._cond:
            if self._closed:
                return
            self._gpio._record(self._gpio._lines[self.name], active=False)
            self._closed = True
            self._gpio._release(self)


class _MemoryInput:
    def __init__(self, gpio: MemoryGpio, name: str | int) -> None:
        self._gpio, self.name, self._closed = gpio, name, False

    def wait_edge(self, timeout_s: float) -> float | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._gpio._cond:
            edges = self._gpio._lines[self.name].edges
            while not edges and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._gpio._cond.wait(remaining)
            return None if self._closed else edges.popleft()

    def close(self) -> None:
        with self._gpio._cond:
            if self._closed:
                return
            self._closed = True
            self._gpio._release(self)
