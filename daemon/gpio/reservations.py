"""One line, one user: which configured key holds each GPIO line (as gpiozero reserves pins).

The same rule judges the configuration's text (``line = "GPIO17"`` twice) and, once the chip is
open, what the names and offsets really are (``"GPIO17"`` and ``"17"`` can be one line: only
the chip knows).

    >>> lines = Reservations()
    >>> lines.reserve("GPIO17", "gpio.reject.line") is None
    True
    >>> lines.reserve("GPIO17", "trigger.line")
    'gpio.reject.line'
"""

from __future__ import annotations

from collections.abc import Hashable


class Reservations:
    def __init__(self) -> None:
        self.holders: dict[Hashable, str] = {}

    def reserve(self, line: Hashable, key: str) -> str | None:
        """Reserves ``line`` for ``key``; returns the key that already holds it, or None."""
        holder = self.holders.get(line)
        if holder is None:
            self.holders[line] = key
        return holder


def configured_line(text: str) -> Hashable:
    """What a line's text names before the chip is open: an offset ("17") or a name ("GPIO17")."""
    return int(text.strip()) if text.strip().isdigit() else text.strip()
