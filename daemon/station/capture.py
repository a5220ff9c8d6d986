"""The capture thread: waits for the trigger, reads frames and hands each happening over to
the inspection loop as a typed event, through a queue of one (the next frame is taken while
the current one is scored). A failing source is reopened with backoff.

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

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.station.sources import BadFrame, Frame, Source, SourceEnded, SourceFault
from inspectd.daemon.station.triggers import Trigger

POLL_S = 0.1  # longest a trigger or a read may block before the thread reports it is alive


@dataclass(frozen=True)
class FrameCaptured:
    frame: Frame


@dataclass(frozen=True)
class FrameUnreadable:
    """One frame could not be read (a corrupt file): a fault record, never a verdict."""

    message: str


@dataclass(frozen=True)
class SourceDown:
    """The camera or stream failed; it is being reopened."""

    message: str


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

    def stop(self) -> list[CaptureEvent]:
        """Stop the thread; returns the events it had already handed over (frames seen must still be inspected)."""
        self.stopping.set()
        self.join(timeout=5)
        left: list[CaptureEvent] = []
        while True:
            try:
                left.append(self.events.get_nowait())
            except queue.Empty:
                return left

    def run(self) -> None:
        source: Source | None = None
        delay, faulted = 1.0, False
        while not self.stopping.is_set():
            self.alive_at = time.monotonic()
            try:
                if source is None:
                    source = self.open_source()
                    self.opened.set()
                    if faulted:
                        self._hand_over(SourceBack(f"{source.name} is back"))
                    delay, faulted = 1.0, False
                if not self.trigger.wait(POLL_S):
                    continue
                frame = source.read(POLL_S)
                self.alive_at = time.monotonic()
                if frame is not None:
                    self._hand_over(FrameCaptured(frame))
            except BadFrame as exc:
                self._hand_over(FrameUnreadable(str(exc)))
            except SourceEnded as exc:
                self._hand_over(ReplayOver(str(exc)))
                break
            except SourceFault as exc:
                self._hand_over(SourceDown(f"{exc}; retrying in {delay:.0f} s"))
                if source is not None:
                    source.close()
                source, faulted = None, True
                self._sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
            except InspectdError as exc:
                self._hand_over(CaptureFailed(exc))
                break
        if source is not None:
            source.close()

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
