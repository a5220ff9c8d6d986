"""A real sd_notify receiver for tests: a unix datagram socket, as systemd listens on one (NOTIFY_SOCKET).

    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = subprocess.Popen([...], env=dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000"))
    notify.wait_for("READY=1"); notify.pings(); notify.close()
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    """A real sd_notify receiver: a unix datagram socket, like systemd's."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, text: str, timeout_s: float = 60.0, after: float = float("-inf")) -> float:
        """When the first message holding ``text`` (and received after ``after``) came."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, message in list(self.messages):
                if text in message and at > after:
                    return at
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout_s} s; got {[m for _, m in self.messages][-5:]}")

    def pings(self) -> list[float]:
        return [at for at, message in self.messages if "WATCHDOG=1" in message]

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.socket.close()
