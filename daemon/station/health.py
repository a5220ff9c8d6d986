"""Telling systemd and the PLC that the station is alive and inspecting: the policy.

- ``READY=1`` once the first frame was scored, or, when frames come only with parts (a GPIO
  trigger, a watched folder), once the source is open: an idle line must not keep systemd
  waiting until TimeoutStartSec.
- ``WATCHDOG=1`` from the inspection loop, and only while the capture thread makes
  progress: a hung camera or inference stops the pings and systemd restarts the service.
- The ready line's square wave (``[gpio.ready]``), under the same condition and also stopped
  while the source is down or frames keep coming without verdicts (``Tally.judging``): the PLC
  sees no edge and knows the inspector is not inspecting.
- ``STATUS=`` every second.

The sd_notify protocol itself is in ``notify``; the square wave's device in ``gpio.heartbeat``.
"""

from __future__ import annotations

from dataclasses import dataclass

from inspectd.daemon.gpio import GpioBackend
from inspectd.daemon.gpio.heartbeat import Heartbeat
from inspectd.daemon.station.capture import Capture
from inspectd.daemon.station.notify import Notifier
from inspectd.daemon.station.outputs import printable
from inspectd.daemon.station.settings import Section, setting
from inspectd.daemon.station.tally import Tally

HEARTBEAT_STALE_S = 1.0  # capture silent this long: the ready line stops
NO_WATCHDOG_HANG_S = 5.0
STATUS_EVERY_S = 1.0
STATUS_CHARS = 400


@dataclass
class ReadyLineConfig(Section):
    """``[gpio.ready]``."""

    line: str = ""  # line name or offset; "" for no ready line
    active_low: bool = False
    period_ms: float = setting(500.0, above=0, fix="the square wave's period in milliseconds, e.g. 500")

    def lines(self) -> dict[str, str]:
        """The GPIO lines it takes, by key (Config.gpio_lines)."""
        return {"line": self.line}

    def open(self, gpio: GpioBackend) -> Heartbeat | None:
        if not self.line:
            return None
        return Heartbeat(gpio.output(self.line, active_low=self.active_low, consumer="inspectd-ready", key="gpio.ready.line"),
                         self.period_ms)


class Health:
    def __init__(self, notifier: Notifier, *, frames_on_demand: bool, heartbeat: Heartbeat | None) -> None:
        self.notifier = notifier
        self.frames_on_demand = frames_on_demand
        self.heartbeat = heartbeat
        watchdog = notifier.watchdog_interval_s
        self.hang_timeout_s = watchdog * 2 if watchdog else NO_WATCHDOG_HANG_S  # half of WATCHDOG_USEC
        self.ready = False
        self.last_status = float("-inf")

    def tick(self, now: float, capture: Capture, tally: Tally) -> None:
        """Called by the inspection loop on every turn (at least every capture.POLL_S)."""
        if not self.ready and (tally.frames or (self.frames_on_demand and capture.opened.is_set())):
            self.ready = True
            self.notifier.ready(tally.status(now))
        stale = now - capture.alive_at
        if stale < self.hang_timeout_s:
            self.notifier.watchdog(now)
        if self.heartbeat is not None:
            if stale < HEARTBEAT_STALE_S and self.ready and tally.judging:
                self.heartbeat.healthy()
                self.heartbeat.tick(now)
            else:
                self.heartbeat.fault()
        if self.ready and now - self.last_status >= STATUS_EVERY_S:
            self.last_status = now
            self.notifier.status(tally.status(now))

    def reloading(self) -> None:
        self.notifier.reloading()

    def reloaded(self, status: str) -> None:
        """After a reload, applied or refused: systemd waits for READY=1 again."""
        self.notifier.ready(status)

    def stopping(self, reason: str) -> None:
        self.notifier.stopping(f"stopping: {printable(reason, STATUS_CHARS)}")  # one line: the protocol is line based
