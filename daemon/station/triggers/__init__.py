"""Triggers: when to take a frame. One module per kind, chosen by ``trigger.kind``.

- ``continuous``: every loop iteration, as fast as the model allows;
- ``interval``: on a fixed schedule (``trigger.interval_ms``);
- ``gpio_trigger``: on an edge from a part-present sensor (``trigger.line``).

The inspection loop calls ``wait(timeout_s)`` with a short timeout (a fraction of the ready
line's period) so that, when no part comes, it still gets control back to tick the
heartbeat and the systemd watchdog: a trigger never blocks longer than ``timeout_s``.
"""

from __future__ import annotations

from typing import Protocol


class Trigger(Protocol):
    def wait(self, timeout_s: float) -> bool:
        """True: take a frame now. False: nothing within ``timeout_s`` (the caller ticks and asks again)."""

    def close(self) -> None:
        """Release whatever the trigger holds (a GPIO line). Idempotent."""
