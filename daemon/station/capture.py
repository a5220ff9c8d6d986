"""The capture thread: waits for the trigger, reads frames and hands each happening over to
the inspection loop as a typed event, through a queue of one (the next frame is taken while
the current one is scored). A failing source is reopened with backoff.

The thread never dies of an exception. A source's own errors mean what the source says
(``BadFrame``, ``SourceFault``, ``SourceEnded``; another InspectdError is a configuration the
source cannot honour and ends the run, unless the source worked before: then it is down).
Any other exception is a fault record: from ``read``, one frame is lost, and
UNEXPECTED_IN_A_ROW of them in a row mean the source is down; from opening the source or
waiting for the trigger, the source is down at once. A source that is down is closed and
reopened with backoff (1 s doubling to ``retry_max_s``).

``alive_at`` is the health signal: the thread refreshes it whenever it makes progress,
including while it waits for the loop or for a retry, so only a source or trigger that hangs
lets it go stale.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from inspectd.daemon.errors import ConfigError, InspectdError
from inspectd.daemon.station.outputs import describe, error_name
from inspectd.daemon.station.sources import BadFrame, Frame, Source, SourceEnded, SourceFault
from inspectd.daemon.station.triggers import Trigger

POLL_S = 0.1  # longest a trigger or a read may block before the thread reports it is alive
UNEXPECTED_IN_A_ROW = 3  # unexpected errors from read() in a row that mean the source is down, not one frame


@dataclass(frozen=True)
class FrameCaptured:
    frame: Frame


@dataclass(frozen=True)
class FrameUnreadable:
    """One frame could not be read (a corrupt file): a fault record, never a verdict."""

    message: str
    error: str = "BadFrame"  # the exception's type


@dataclass(frozen=True)
class SourceDown:
    """The camera or stream failed; it is being reopened."""

    message: str
    error: str = "SourceFault"


@dataclass(frozen=True)
class SourceBack:
    message: str


@dataclass(frozen=True)
class ReplayOver:
    """A replay reached its end: the run is over."""

    reason: str


@dataclass(frozen=True)
class CaptureFailed:
    """An error no retry will fix (a configuration the source cannot honour)."""

    error: InspectdError


CaptureEvent = FrameCaptured | FrameUnreadable | SourceDown | SourceBack | ReplayOver | CaptureFailed


class Capture(threading.Thread):
    def __init__(self, open_source: Callable[[], Source], trigger: Trigger, retry_max_s: float) -> None:
        super().__init__(name="capture", daemon=True)
        self.open_source, self.trigger, self.retry_max_s = open_source, trigger, retry_max_s
        self.events: queue.Queue[CaptureEvent] = queue.Queue(maxsize=1)
        self.stopping = threading.Event()
        self.opened = threading.Event()  # the source was opened at least once
        self.alive_at = time.monotonic()

    def next_event(self, timeout_s: float) -> CaptureEvent | None:
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def stop(self, timeout_s: float = 5.0) -> list[CaptureEvent]:
        """Stop the thread; returns the events it had already handed over (frames seen must still be inspected)."""
        self.stopping.set()
        self.join(timeout=max(timeout_s, 0.0))
        left: list[CaptureEvent] = []
        while True:
            try:
                left.append(self.events.get_nowait())
            except queue.Empty:
                return left

    def run(self) -> None:
        source: Source | None = None
        delay, faulted, unexpected = 1.0, False, 0
        try:
            while not self.stopping.is_set():
                self.alive_at = time.monotonic()
                step = "open"
                try:
                    if source is None:
                        source = self.open_source()
                        self.opened.set()
                        if faulted:
                            self._hand_over(SourceBack(f"{source.name} is back"))
                        delay, faulted = 1.0, False
                    step = "trigger"
                    if not self.trigger.wait(POLL_S):
                        continue
                    step = "read"
                    frame = source.read(POLL_S)
                    self.alive_at = time.monotonic()
                    unexpected = 0
                    if frame is not None:
                        self._hand_over(FrameCaptured(frame))
                except BadFrame as exc:
                    self._hand_over(FrameUnreadable(str(exc), error_name(exc)))
                except SourceEnded as exc:
                    self._hand_over(ReplayOver(str(exc)))
                    break
                except SourceFault as exc:
                    source, delay = self._down(source, str(exc), error_name(exc), delay)
                    faulted = True
                except InspectdError as exc:
                    if step == "open" and self.opened.is_set() and not isinstance(exc, ConfigError):  # it worked before: down
                        source, delay = self._down(None, str(exc), error_name(exc), delay)
                        continue
                    self._hand_over(CaptureFailed(exc))
                    break
                except Exception as exc:  # noqa: BLE001 - the capture thread's fault boundary
                    unexpected += step == "read"
                    where = f"{source.name if source is not None else 'the source'}"
                    if step == "read" and unexpected < UNEXPECTED_IN_A_ROW:
                        self._hand_over(FrameUnreadable(f"{where}: a frame could not be read: {describe(exc)}", error_name(exc)))
                        continue
                    doing = {"open": "cannot be opened", "trigger": "trigger failed", "read": f"failed {unexpected} reads in a row"}[step]
                    source, delay = self._down(source, f"{where} {doing}: {describe(exc)}", error_name(exc), delay)
                    faulted, unexpected = True, 0
        finally:
            _close_quietly(source)

    def _down(self, source: Source | None, message: str, error: str, delay: float) -> tuple[None, float]:
        """The source failed: report it, close it, wait; returns the next wait."""
        self._hand_over(SourceDown(f"{message}; retrying in {delay:.0f} s", error))
        _close_quietly(source)
        self._sleep(delay)
        return None, min(delay * 2, self.retry_max_s)

    def _hand_over(self, event: CaptureEvent) -> None:
        while not self.stopping.is_set():
            self.alive_at = time.monotonic()  # waiting for the main loop is not hanging
            try:
                self.events.put(event, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping.is_set() and time.monotonic() < end:
            self.alive_at = time.monotonic()
            self.stopping.wait(min(POLL_S, end - time.monotonic()))


def _close_quietly(source: Source | None) -> None:
    """A failed source is closed as well as it can be; its close failing changes nothing."""
    if source is None:
        return
    try:
        source.close()
    except Exception:  # noqa: BLE001
        pass
