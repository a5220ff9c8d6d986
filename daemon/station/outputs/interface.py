"""What every output implements, the kinds of service events it receives, and how a fault is named.

A fault event carries ``fault`` (where it happened: one of ``Fault``) and ``error`` (the
exception's type), which the journal records as INSPECTD_FAULT and INSPECTD_ERROR.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from inspectd.daemon.records import RecordKind as EventKind  # the kinds of records besides verdicts
from inspectd.daemon.station.settings import Section
from inspectd.daemon.station.verdict import FrameVerdict

ONE_LINE_CHARS = 300  # an exception's message in a fault record, at most

_OTHER_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")
# C0 and C1 controls, DEL and the Unicode line separators: shown escaped, so every record and line is one line.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


class Fault(enum.StrEnum):
    """Where a fault happened (INSPECTD_FAULT)."""

    SOURCE = "source"  # the camera, stream or folder failed: reopened with backoff
    FRAME = "frame"  # one frame could not be read: no verdict for it
    INFERENCE = "inference"  # the model or the decision failed on a frame: no verdict for it
    OUTPUT = "output"  # an output could not take a verdict or a record; the others did
    ARCHIVE = "archive"  # frames not archived: behind, disk full, a write that failed
    RELOAD = "reload"  # a reload was refused; the running configuration and model are kept
    HEALTH = "health"  # the ready line or systemd notification failed
    CONFIG = "config"  # a configuration error found while running: the run ends (exit 78)
    INTERNAL = "internal"  # a bug in the loop itself: the run ends (exit 70)


def printable(text: object, limit: int) -> str:
    """Any text (a file name that is not UTF-8, newlines, thousands of characters) as one line of valid UTF-8.

    Bytes that are not UTF-8 (file names decode to lone surrogates) show as ``\\xff``, control characters as
    ``\\x0a``; beyond ``limit`` characters the rest is cut and counted.

        >>> printable("bad\\udcff\\nname.png", 100)
        'bad\\\\xff\\\\x0aname.png'
    """
    text = _OTHER_SURROGATES.sub(lambda found: f"\\u{ord(found.group()):04x}", str(text))  # not an escaped byte
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").translate(_ESCAPES)
    if len(text) > limit:
        cut = len(text) - limit + 20
        text = f"{text[: limit - 20]}...(+{cut} chars)"
    return text


def error_name(exc: BaseException) -> str:
    """The exception's type as a person would look it up: ``ValueError``, ``cv2.error``, ``SourceFault``."""
    kind = type(exc)
    module = kind.__module__
    if module == "builtins" or module.startswith("inspectd."):
        return kind.__qualname__
    return f"{module.split('.')[0]}.{kind.__qualname__}"


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, at most ONE_LINE_CHARS of message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " / ".join(lines) or "(no message)"
    if len(text) > ONE_LINE_CHARS:
        text = text[: ONE_LINE_CHARS - 3] + "..."
    return f"{error_name(exc)}: {text}"


@dataclass(frozen=True)
class Notice:
    """An event found off the inspection loop (the archive's writer): the loop records it, in order with verdicts."""

    kind: EventKind
    message: str
    fields: dict[str, object] = field(default_factory=dict)
    trouble: tuple[str, str] | None = None  # (part, what STATUS shows while it lasts); text "" when it is over


class Output(Protocol):
    """Every output. Outputs that work off the loop (the archive) also have ``start()`` (take their folder: the
    station calls it when it starts inspecting, ``inspectd check`` never does) and ``drain(deadline)`` (finish
    the work in flight by ``deadline``, time.monotonic(); say in a notice what could not be finished), and a
    ``name`` for fault records ("journal", "archive", "reject line"; the class name otherwise)."""

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

    def open(self, on_fault: Callable[[Notice], None]) -> Output:
        """``on_fault`` takes notices found off the inspection loop (the archive's writer thread)."""
        raise NotImplementedError
