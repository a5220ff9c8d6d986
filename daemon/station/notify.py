"""systemd's notify protocol (sd_notify) over $NOTIFY_SOCKET, without libsystemd.

READY=1, STATUS=..., WATCHDOG=1 and STOPPING=1 are single datagrams to a unix socket;
nothing to send when not started by systemd (no NOTIFY_SOCKET).
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address or None
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self.address else None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        # Ping four times per period: at most every WATCHDOG_USEC/2 even with a late loop turn.
        self.watchdog_interval_s = int(usec) / 4e6 if enabled else None
        self.last_ping = float("-inf")

    def send(self, *assignments: str) -> None:
        if self.socket is None:
            return
        try:
            self.socket.sendto("\n".join(assignments).encode(), self.address)
        except OSError:
            pass  # systemd gone or socket full: nothing useful to do from here

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self, now: float | None = None) -> None:
        """Ping if due. Call only from the inspection loop, only while it is healthy."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic() if now is None else now
        if now - self.last_ping >= self.watchdog_interval_s:
            self.last_ping = now
            self.send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
