"""Every signal systemd or an operator may send, handled or ignored on purpose; a handler only records the request.

- SIGTERM, SIGINT, SIGQUIT: stop (the frames captured get their verdicts, the stop record is written);
- SIGHUP: reload (``systemctl reload inspectd``); a burst of them is one reload, or two;
- SIGUSR1: a status record (frames, rejects, the state of the ready line), the station goes on;
- SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR and the real-time signals, whose default is to end the process
  without a word: ignored, on purpose.

A handler sets a flag and returns: it takes no lock (a lock held by the code it interrupted would deadlock it) and
does no I/O. The loop reads the flags each turn (``take``). Installed first thing by ``inspectd run``, before the
model loads, so a signal during start-up is a request too, not the end of the process.

    >>> requests = Requests()
    >>> requests.record(signal.SIGHUP, None); requests.record(signal.SIGHUP, None)
    >>> requests.take(Request.RELOAD), requests.take(Request.RELOAD)
    (True, False)
"""

from __future__ import annotations

import enum
import signal
import threading
from types import FrameType


class Request(enum.Enum):
    STOP = "stop"
    RELOAD = "reload"
    STATUS = "status"


ACTIONS = {signal.SIGTERM: Request.STOP, signal.SIGINT: Request.STOP, signal.SIGQUIT: Request.STOP, signal.SIGHUP: Request.RELOAD,
           signal.SIGUSR1: Request.STATUS}
IGNORED = (signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO, signal.SIGPWR,
           *range(signal.SIGRTMIN, signal.SIGRTMAX + 1))


class Requests:
    """What signals asked for, as plain flags (an assignment is atomic; nothing here can block)."""

    def __init__(self) -> None:
        self.pending = {request: False for request in Request}
        self.stop_signal: int | None = None  # which signal asked for the stop, for the stop record

    def record(self, number: int, _frame: FrameType | None) -> None:
        request = ACTIONS[signal.Signals(number)]
        if request is Request.STOP and self.stop_signal is None:
            self.stop_signal = number
        self.pending[request] = True

    def ask(self, request: Request) -> None:
        """The same request from code (tests, embedders)."""
        self.pending[request] = True

    def take(self, request: Request) -> bool:
        """Whether ``request`` was asked for since the last take (a stop stays asked for)."""
        asked = self.pending[request]
        if asked and request is not Request.STOP:
            self.pending[request] = False  # one arriving meanwhile is served by this one: it reads the file after
        return asked

    @property
    def stopping(self) -> bool:
        return self.pending[Request.STOP]

    def install(self) -> bool:
        """The handlers, when this is the main thread (Python delivers signals there only); whether they were installed."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for number in ACTIONS:
            signal.signal(number, self.record)
        for number in IGNORED:
            signal.signal(number, signal.SIG_IGN)
        return True
