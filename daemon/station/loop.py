"""The station as a systemd service: source -> trigger -> model -> decision -> outputs.

``Station`` coordinates; the parts do the work: ``capture`` takes frames on a thread of its
own while the loop scores the current one, ``pipeline`` scores and decides, ``outputs``
receive verdicts and events, ``health`` tells systemd and the PLC the station is alive,
``reload`` swaps in a new configuration on SIGHUP.

Signals: SIGTERM/SIGINT stop after the frames already captured; SIGHUP reloads.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.station import reload as reloading
from inspectd.daemon.station.capture import (POLL_S, Capture, CaptureEvent, CaptureFailed, FrameCaptured, FrameUnreadable,
                                             ReplayOver, SourceBack, SourceDown)
from inspectd.daemon.station.config import Config
from inspectd.daemon.station.devices import Devices, open_devices
from inspectd.daemon.station.health import Health
from inspectd.daemon.station.notify import Notifier
from inspectd.daemon.station.outputs import EventKind, Fanout, Output
from inspectd.daemon.station.pipeline import Pipeline, build_pipeline
from inspectd.daemon.station.settings import located
from inspectd.daemon.station.sources import Frame, Source, SourceConfig
from inspectd.daemon.station.tally import Tally
from inspectd.daemon.station.verdict import FrameVerdict


class Station:
    """
        >>> station = Station(load("/etc/inspectd/inspectd.toml"))   # doctest: +SKIP
        >>> exit_code = station.run()                                # doctest: +SKIP

    ``extra_outputs`` receive every verdict and event too (embedders, tests); they are not
    closed by the station. ``open_source`` replaces how the capture thread opens
    ``config.source`` (benchmarks feed frames from memory).
    """

    def __init__(self, config: Config, config_path: str | Path | None = None, frames: int | None = None,
                 extra_outputs: Sequence[Output] = (), notifier: Notifier | None = None,
                 open_source: Callable[[SourceConfig], Source] = SourceConfig.open) -> None:
        self.config_path = config_path
        self.frames_limit = frames
        self.extra_outputs = list(extra_outputs)
        self.open_source = open_source
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.archive_faults: queue.SimpleQueue[str] = queue.SimpleQueue()  # reported from the loop, in order with verdicts
        self.tally = Tally()
        self.pipeline = build_pipeline(config, self.archive_faults.put)
        try:
            self.devices = open_devices(config)
        except BaseException:
            self.pipeline.close()
            raise
        self.health = Health(notifier or Notifier(), frames_on_demand=config.frames_on_demand, heartbeat=self.devices.heartbeat)
        self.outputs = Fanout([*self.devices.outputs, *self.pipeline.outputs, *self.extra_outputs])
        self.capture: Capture | None = None

    @property
    def config(self) -> Config:
        return self.pipeline.config

    def request_stop(self, *_: object) -> None:
        self.stop_requested.set()

    def request_reload(self, *_: object) -> None:
        self.reload_requested.set()

    def run(self) -> int:
        """Inspects until stopped, the replay ends or the frames asked for are done: 0. An error that ends the
        run is recorded (fault and stop records), the parts are closed, then it is raised (the CLI prints it)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGHUP, self.request_reload)
        model, config = self.pipeline.model, self.config
        self.pipeline.announce(self.outputs, EventKind.START, f"started: model {model.model_id[:12]} at {model.precision}, "
                                                              f"source {config.source.kind}, trigger {config.trigger.kind}")
        self.start_capture()
        failure: InspectdError | None = None
        reason = "stopped"
        try:
            while not self.stop_requested.is_set():
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    reloading.reload(self)
                assert self.capture is not None
                event = self.capture.next_event(POLL_S)
                if event is None and not self.capture.is_alive():
                    raise InspectdError("the capture thread died unexpectedly (see the traceback above); restarting is up to systemd",
                                        exit_code=1)
                ended = self._handle(event)
                if ended is not None:
                    reason = ended
                    break
                self.health.tick(time.monotonic(), self.capture, self.tally)
                while not self.archive_faults.empty():
                    self.outputs.event(EventKind.FAULT, self.archive_faults.get_nowait())
                if self._limit_reached():
                    reason = f"inspected the {self.frames_limit} frames asked for"
                    break
        except InspectdError as exc:
            self.outputs.event(EventKind.FAULT, str(exc))
            failure, reason = exc, f"stopped by an error: {exc}"
        finally:
            self.health.stopping(reason)
            self.stop_capture()
            self.outputs.event(EventKind.STOP, f"stopped ({reason}): {self.tally.frames} frames, {self.tally.rejects} rejects",
                               frames=self.tally.frames, rejects=self.tally.rejects)
            self.close()
        if failure is not None:
            raise failure
        return 0

    def inspect(self, frame: Frame) -> FrameVerdict | None:
        """One station cycle for a frame in memory: infer, decide, every output. None if it could not be scored."""
        try:
            verdict = self.pipeline.inspect(frame, self.tally.frames + 1)
        except InspectdError as exc:
            self.outputs.event(EventKind.FAULT, f"{frame.name}: {exc}")
            return None
        self.tally.count(verdict)
        self.outputs.verdict(verdict)
        return verdict

    def start_capture(self) -> None:
        source = self.config.source
        self.capture = Capture(lambda: self.open_source(source), self.devices.trigger, source.retry_max_s)
        self.capture.start()

    def stop_capture(self) -> None:
        """Frames already captured still get their verdict: a part that was seen is never dropped."""
        if self.capture is None:
            return
        for event in self.capture.stop():
            if isinstance(event, FrameCaptured) and not self._limit_reached():
                self.inspect(event.frame)
        self.capture = None

    def swap(self, pipeline: Pipeline, devices: Devices | None = None) -> None:
        """Put a reloaded pipeline (and devices, if they were reopened) in place; the old pipeline is closed."""
        old, self.pipeline = self.pipeline, pipeline
        old.close()
        if devices is not None:
            self.devices = devices
            self.health.heartbeat = devices.heartbeat
        self.health.frames_on_demand = pipeline.config.frames_on_demand
        self.outputs = Fanout([*self.devices.outputs, *pipeline.outputs, *self.extra_outputs])

    def close(self) -> None:
        """The outputs, then the devices (lines to their safe state). Idempotent; ``run`` ends with it."""
        self.pipeline.close()
        self.devices.close()

    def _handle(self, event: CaptureEvent | None) -> str | None:
        """Acts on one event from the capture thread; returns why the run ends, if it does."""
        source = self.config.source.kind
        match event:
            case FrameCaptured(frame):
                self.inspect(frame)
            case FrameUnreadable(message):
                self.outputs.event(EventKind.FAULT, message, source=source)
            case SourceDown(message):
                self.tally.source_down = True
                self.outputs.event(EventKind.FAULT, message, source=source)
            case SourceBack(message):
                self.tally.source_down = False
                self.outputs.event(EventKind.START, message)
            case ReplayOver(reason):
                return reason
            case CaptureFailed(error):
                raise located(error, self.config.file)
        return None

    def _limit_reached(self) -> bool:
        return self.frames_limit is not None and self.tally.frames >= self.frames_limit
