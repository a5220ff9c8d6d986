"""GPIO lines for the line's PLC: the reject pulse, the ready heartbeat, the part-present input.

A device (``RejectPulse``, ``Heartbeat``, ``PartSensor``) is a small class over one line
taken from a swappable backend, as in gpiozero: ``"memory"`` is a complete in-memory
implementation for tests and dry runs, anything else is a libgpiod v2 chip (a name such as
``gpiochip0``, a path such as ``/dev/gpiochip0``, or a label such as ``pinctrl-rp1``, the
Raspberry Pi 5 header chip, whose number depends on the kernel).

Callers always speak "active"/"inactive": the backend applies ``active_low``. Lines are
named by line name (``"GPIO17"``) or offset (``17`` or ``"17"``). Devices know lines, not
verdicts: the station's reject output and GPIO trigger adapt them. A chip or line that cannot
be used raises ``GpioError`` naming the configuration key that chose it; every ``close()`` may
be called twice.

    >>> gpio = open_backend("memory")
    >>> reject = gpio.output("GPIO17", active_low=True, consumer="inspectd-reject")
    >>> reject.set(True)
    >>> gpio.level("GPIO17"), gpio.physical("GPIO17")    # active, electrically low
    (True, False)
    >>> gpio.close()                                      # every line back to inactive
    >>> gpio.level("GPIO17")
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from inspectd.daemon.errors import GpioError
from inspectd.daemon.files import process_command

BIASES = ("disabled", "pull-up", "pull-down", "as-is")


@dataclass
class LineInfo:
    offset: int  # -1 on the memory chip, whose lines have names only
    name: str  # "" when the chip does not name its lines
    used: bool
    consumer: str  # who holds it ("" when free): a kernel driver or a program like inspectd


@runtime_checkable
class OutputLine(Protocol):
    def set(self, active: bool) -> None:
        """Drive the line active or inactive (the backend applies active-low)."""

    def close(self) -> None:
        """Drive the line inactive (its safe state), then release it. Idempotent."""


@runtime_checkable
class InputLine(Protocol):
    def wait_edge(self, timeout_s: float) -> float | None:
        """The time.monotonic() timestamp of the next edge to ACTIVE, or None after timeout_s.

        Edges are queued from the moment the line is requested, so none is lost while the
        caller is busy; they come back oldest first.
        """

    def close(self) -> None:
        """Release the line; a wait_edge blocked in another thread returns None. Idempotent."""


@runtime_checkable
class GpioBackend(Protocol):
    def output(self, line: str | int, *, active_low: bool = False, consumer: str = "inspectd", key: str | None = None) -> OutputLine:
        """Request ``line`` as an output, driven inactive from the start.

        ``key`` is the configuration key that named the line, used in error messages.
        """

    def input(
        self, line: str | int, *, active_low: bool = False, bias: str = "as-is", consumer: str = "inspectd", key: str | None = None
    ) -> InputLine:
        """Request ``line`` as an input with edge detection; bias: disabled | pull-up | pull-down | as-is."""

    def line_info(self, line: str | int, *, key: str | None = None) -> LineInfo:
        """Whether ``line`` exists (GpioError naming ``key`` if not) and who holds it, without requesting it."""

    def close(self) -> None:
        """Close every line this backend handed out (outputs go inactive) and the chip. Idempotent."""


def open_backend(chip: str, *, key: str = "gpio.chip") -> GpioBackend:
    """``"memory"``: a new MemoryGpio; anything else: the libgpiod v2 chip of that name, path or label."""
    if chip == "memory":
        from inspectd.daemon.gpio.memory import MemoryGpio

        return MemoryGpio()
    from inspectd.daemon.gpio.libgpiod import GpiodBackend

    return GpiodBackend(chip, key=key)


def holder(consumer: str | None) -> str:
    """Who holds a line, from its consumer: an inspectd names its PID ("inspectd-reject:1234"), so its command is shown."""
    if not consumer:
        return "another program or a kernel driver"
    name, _, pid = consumer.rpartition(":")
    if name and pid.isdigit():
        return f"{consumer!r} (PID {pid}: {process_command(int(pid))})"
    return repr(consumer)


LINE_FIX = 'use a name like "GPIO17" or an offset like 17 (`inspectd doctor` lists the lines)'


def line_id(line: str | int, key: str | None) -> str | int:
    """Validate a line name or offset; a string of digits is an offset."""
    if isinstance(line, bool) or not isinstance(line, (str, int)):
        raise GpioError(f"{line!r} is not a line name or offset", key=key, fix=LINE_FIX)
    if isinstance(line, str):
        line = line.strip()
        if line.isdigit():
            return int(line)
        if not line:
            raise GpioError("empty line name", key=key, fix=LINE_FIX)
    elif line < 0:
        raise GpioError(f"offset {line} is negative", key=key, fix="offsets count from 0 (`inspectd doctor` lists the lines)")
    return line


def check_bias(bias: str, key: str | None) -> str:
    """``key`` names the line ("trigger.line"); the bias is its sibling key ("trigger.bias")."""
    if bias not in BIASES:
        where = f"{key.rsplit('.', 1)[0]}.bias" if key else None
        raise GpioError(f"{bias!r} is not a bias", key=where, fix=f"use one of {', '.join(BIASES)}")
    return bias
