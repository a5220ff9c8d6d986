"""The station as a systemd service: source -> trigger -> model -> decision -> outputs.

``Station`` coordinates; the parts do the work: ``capture`` takes frames on a thread of its
own while the loop scores the current one, ``pipeline`` scores and decides, ``outputs``
receive verdicts and events, ``health`` tells systemd and the PLC the station is alive,
``reload`` swaps in a new configuration on SIGHUP.

Signals: SIGTERM/SIGINT stop after the frames already captured; SIGHUP reloads.

The fault boundary: an exception in capture (the thread turns it into an event), in
inference or the decision (``inspect``), in an output (``Fanout``), in the ready line or a
reload becomes a fault record (INSPECTD_FAULT says where, INSPECTD_ERROR the type) and the
loop goes on. A configuration error found while running ends the run with its status (78);
an error of the loop itself ends it with EX_SOFTWARE (70), after a fault record and the stop
record. A stop takes at most STOP_BUDGET_S, below the unit's TimeoutStopSec.
"""

from __future__ import annotations

import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from inspectd.daemon.errors import ConfigError, InspectdError
from inspectd.daemon.station.capture import (POLL_S, Capture, CaptureEvent, CaptureFailed, FrameCaptured, FrameUnreadable,
                                             ReplayOver, SourceBack, SourceDown)
from inspectd.daemon.station.config import Config
from inspectd.daemon.station.devices import Devices, open_devices
from inspectd.daemon.station.health import Health
from inspectd.daemon.station.notify import Notifier
from inspectd.daemon.station.outputs import EventKind, Fanout, Fault, Notice, Output, describe
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.station.pipeline import Pipeline, build_pipeline
from inspectd.daemon.station.reload import KEEPING, Plan, Reloader, make_plan
from inspectd.daemon.station.settings import located
from inspectd.daemon.station.signals import Request, Requests
from inspectd.daemon.station.sources import Frame, Source, SourceConfig
from inspectd.daemon.station.tally import Tally
from inspectd.daemon.station.verdict import FrameVerdict

EX_SOFTWARE = 70  # sysexits.h: an internal error; systemd restarts the service
STOP_BUDGET_S = 12.0  # SIGTERM -> stop record and lines released; the unit's TimeoutStopSec is 15
CAPTURE_STOP_S = 5.0  # of which waiting for a read in progress
RELOAD_WAIT_S = 2.0  # of which for a reload plan being made (what it opened is then closed)
CLOSE_RESERVE_S = 4.0  # the archive's drain ends this long before the budget: leaving OpenCV, the stop record, closing
DRIFT = "drift"  # the drift alarm's part in STATUS


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
                 open_source: Callable[[SourceConfig], Source] = SourceConfig.open, requests: Requests | None = None,
                 model: Model | None = None) -> None:
        self.config_path = config_path
        self.frames_limit = frames
        self.extra_outputs = list(extra_outputs)
        self.open_source = open_source
        self.owns_requests = requests is None  # `inspectd run` installs its own handlers, before the model loads
        self.requests = requests or Requests()
        self.notices: queue.SimpleQueue[Notice] = queue.SimpleQueue()  # found off the loop, recorded by it in order with verdicts
        self.reloader = Reloader(config_path, self.notices.put)
        self.tally = Tally()
        self.pipeline = build_pipeline(config, self.notices.put, model=model)
        try:
            self.devices = open_devices(config)
        except BaseException:
            self.pipeline.close()
            raise
        self.health = Health(notifier or Notifier(), frames_on_demand=config.frames_on_demand, heartbeat=self.devices.heartbeat)
        self.outputs = Fanout([*self.devices.outputs, *self.pipeline.outputs, *self.extra_outputs])
        self.capture: Capture | None = None
        self.health_failing = False

    @property
    def config(self) -> Config:
        return self.pipeline.config

    def request_stop(self) -> None:
        self.requests.ask(Request.STOP)

    def request_reload(self) -> None:
        self.requests.ask(Request.RELOAD)

    def run(self) -> int:
        """Inspects until stopped, the replay ends or the frames asked for are done: 0. An error that ends the
        run is recorded (fault and stop records), the parts are closed, then it is raised (the CLI prints it)."""
        if self.owns_requests:
            self.requests.install()
        failure: InspectdError | None = None
        reason = "stopped"
        try:
            model, config = self.pipeline.model, self.config
            self.pipeline.announce(self.outputs, EventKind.START, f"started: model {model.model_id[:12]} at {model.precision}, "
                                                                  f"source {config.source.kind}, trigger {config.trigger.kind}")
            self.pipeline.start()
            self.record_notices()
            self.start_capture()
            while not self.requests.stopping:
                self._serve_requests()
                assert self.capture is not None
                event = self.capture.next_event(POLL_S)
                if event is None and not self.capture.is_alive():
                    raise RuntimeError("the capture thread ended without saying why")
                ended = self._handle(event)
                if ended is not None:
                    reason = ended
                    break
                self._tick()
                self.record_notices()
                if self._limit_reached():
                    reason = f"inspected the {self.frames_limit} frames asked for"
                    break
        except InspectdError as exc:
            self.outputs.fault(Fault.CONFIG if isinstance(exc, ConfigError) else Fault.SOURCE, str(exc), exc)
            failure, reason = exc, f"stopped by an error: {exc}"
        except Exception as exc:  # noqa: BLE001 - the loop's own bug: recorded, stopped cleanly, exit 70
            self._print_traceback()
            self.outputs.fault(Fault.INTERNAL, f"internal error: {describe(exc)}", exc)
            failure = InspectdError(f"internal error: {describe(exc)}; the run stopped (exit {EX_SOFTWARE}), systemd restarts it; "
                                    "please report it with `journalctl -u inspectd`", exit_code=EX_SOFTWARE)
            reason = f"stopped by an internal error: {describe(exc)}"
        finally:
            self._stop(reason)
        if failure is not None:
            raise failure
        return 0

    def inspect(self, frame: Frame) -> FrameVerdict | None:
        """One station cycle for a frame in memory: infer, decide, every output. None if it could not be judged
        (a fault record says why)."""
        try:
            verdict = self.pipeline.inspect(frame, self.tally.frames + 1)
        except Exception as exc:  # noqa: BLE001 - the inference and decision's fault boundary
            text = str(exc) if isinstance(exc, InspectdError) else f"could not be inspected: {describe(exc)}"
            self.outputs.fault(Fault.INFERENCE, f"{frame.name}: {text}", exc, source=frame.name)
            self.tally.not_judged()
            self._done(frame)
            return None
        self.tally.count(verdict)
        self.outputs.verdict(verdict)
        self.watch_drift(verdict)
        self.record_notices()  # what the archive said taking it comes right after its record
        self._done(frame)
        return verdict

    def watch_drift(self, verdict: FrameVerdict) -> None:
        """A PASS score into the drift window (a REJECT is a defect, not a drift): one record when an alarm starts,
        one when it ends; STATUS shows the shift while it lasts."""
        watch = self.pipeline.drift
        if watch is None or verdict.rejected:
            return
        change = watch.add(verdict.score)
        if watch.alarmed and watch.shift is not None:
            self.tally.trouble(DRIFT, f"drift {watch.shift:+.1f}σ")
        if change is None:
            return
        fields = {"frame": verdict.frame, "drift_sigma": f"{change.shift:+.2f}", "drift_window": watch.window,
                  "drift_limit": f"{watch.limit_sigma:g}", "window_mean": f"{change.window_mean:.4f}",
                  "normal_mean": f"{watch.normal_mean:.4f}", "normal_std": f"{watch.normal_std:.4f}"}
        where = (f"the last {watch.window} PASS scores average {change.window_mean:.2f}, {change.shift:+.1f}σ from the model's "
                 f"normal scores ({watch.normal_mean:.2f} ± {watch.normal_std:.2f})")
        if change.alarmed:
            self.outputs.event(EventKind.DRIFT, f"drift at frame {verdict.frame}: {where}, beyond ±{watch.limit_sigma:g}σ: has the "
                                                "camera moved or the lighting changed? false rejects may follow", **fields)
        else:
            self.tally.trouble(DRIFT, "")
            self.outputs.event(EventKind.DRIFT_OVER, f"drift over at frame {verdict.frame}: {where}", **fields)

    def record_notices(self) -> None:
        """What the parts working off the loop (the archive's writer) found, recorded now, in order."""
        while True:
            try:
                notice = self.notices.get_nowait()
            except queue.Empty:
                return
            if notice.trouble is not None:
                self.tally.trouble(*notice.trouble)
            self.outputs.notice(notice)

    def start_capture(self) -> None:
        source = self.config.source
        self.capture = Capture(lambda: self.open_source(source), self.devices.trigger, source.retry_max_s)
        self.capture.start()

    def stop_capture(self, deadline: float | None = None) -> None:
        """Frames already captured still get their verdict: a part that was seen is never dropped."""
        if self.capture is None:
            return
        capture, self.capture = self.capture, None
        wait = CAPTURE_STOP_S if deadline is None else min(CAPTURE_STOP_S, deadline - time.monotonic())
        for event in capture.stop(wait):
            match event:
                case FrameCaptured(frame):
                    if not self._limit_reached():
                        self.inspect(frame)
                case CaptureFailed(error):
                    self.outputs.fault(Fault.CONFIG, str(located(error, self.config.file)), error)
                case ReplayOver():
                    pass
                case _:
                    self._handle(event)

    def _serve_requests(self) -> None:
        """A reload asked for starts a plan (made off the loop); a finished plan is applied; a status is recorded."""
        if self.requests.take(Request.RELOAD) or (self.reloader.again and not self.reloader.busy):
            self.reloader.again = False
            if self.reloader.request(self.pipeline):
                self.health.reloading()
        outcome = self.reloader.take()
        if outcome is not None:
            self.apply(outcome)
        if self.requests.take(Request.STATUS):
            self.outputs.event(EventKind.SUMMARY, f"status (SIGUSR1): {self.tally.status(time.monotonic())}",
                               frames=self.tally.frames, rejects=self.tally.rejects)

    def reload(self) -> None:
        """A reload made and applied now, on this thread (embedders and tests; the daemon makes its plans off the loop)."""
        self.health.reloading()
        try:
            outcome: Plan | Exception = make_plan(self.config_path, self.pipeline, self.notices.put)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the new configuration, the running one stays
            outcome = exc
        self.apply(outcome)

    def apply(self, outcome: Plan | Exception) -> None:
        """A finished reload plan swapped in (devices reopened when their tables changed), or its error refused: a fault
        record, the running configuration kept. Then systemd hears READY=1 again."""
        if isinstance(outcome, Exception):
            self._refuse(outcome)
            return
        plan, devices = outcome, None
        if plan.reopen_devices:
            self.stop_capture()
            self.devices.close()
            try:
                devices = open_devices(plan.config)
            except Exception as exc:  # noqa: BLE001
                plan.discard()
                self.devices = open_devices(self.config)  # raises if even the old ones are gone: the run ends
                self.wire()
                self._refuse(exc)
                self.start_capture()
                return
        self.swap(plan.pipeline, devices)
        model = plan.pipeline.model
        plan.pipeline.announce(self.outputs, EventKind.RELOAD, f"reloaded {self.config_path}: model {model.model_id[:12]} at {model.precision}")
        self.health.reloaded(self.tally.status(time.monotonic()))
        if devices is not None:
            self.start_capture()

    def _refuse(self, exc: Exception) -> None:
        text = str(exc) if isinstance(exc, InspectdError) else describe(exc)
        self.outputs.fault(Fault.RELOAD, f"{KEEPING}: {text}", exc)
        self.health.reloaded(self.tally.status(time.monotonic()))

    def swap(self, pipeline: Pipeline, devices: Devices | None = None) -> None:
        """Put a reloaded pipeline (and devices, if they were reopened) in place; what the old pipeline does not
        share with the new one is closed, then the new one starts."""
        old, self.pipeline = self.pipeline, pipeline
        self._report_close(old.close(keep=pipeline.outputs))
        if devices is not None:
            self.devices = devices
        self.wire()
        if old.drift is not None and old.drift.alarmed and pipeline.drift is not old.drift:
            self.tally.trouble(DRIFT, "")
            self.outputs.event(EventKind.DRIFT_OVER, "drift alarm closed by the reload: the model or [drift] changed; watching again "
                                                     "from an empty window", drift_sigma=f"{old.drift.shift:+.2f}",
                               drift_window=old.drift.window, drift_limit=f"{old.drift.limit_sigma:g}")
        pipeline.start()

    def wire(self) -> None:
        """The health signals and the outputs, from the devices and the pipeline in place."""
        self.health.heartbeat = self.devices.heartbeat
        self.health.frames_on_demand = self.config.frames_on_demand
        self.outputs = Fanout([*self.devices.outputs, *self.pipeline.outputs, *self.extra_outputs])

    def close(self) -> None:
        """The outputs, then the devices (lines to their safe state). Idempotent; ``run`` ends with it."""
        self._report_close(self.pipeline.close())
        try:
            self.devices.close()
        except Exception as exc:  # noqa: BLE001
            self.outputs.fault(Fault.OUTPUT, f"the GPIO lines could not be released: {describe(exc)}", exc)

    def _stop(self, reason: str) -> None:
        """Within STOP_BUDGET_S: the frames captured get their verdicts, the archive writes what it took (or says what it
        could not), the stop record, the parts closed. A step that fails is a fault record; the next steps still run."""
        deadline = time.monotonic() + STOP_BUDGET_S
        if reason == "stopped" and self.requests.stop_signal is not None:
            reason = f"stopped by {signal.Signals(self.requests.stop_signal).name}"
        steps = [lambda: self.health.stopping(reason), lambda: self.reloader.abandon(RELOAD_WAIT_S), lambda: self.stop_capture(deadline),
                 lambda: self.pipeline.drain(deadline - CLOSE_RESERVE_S), self.record_notices]
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - stopping goes on
                self.outputs.fault(Fault.INTERNAL, f"while stopping: {describe(exc)}", exc)
        self.outputs.event(EventKind.STOP, f"stopped ({reason}): {self.tally.frames} frames, {self.tally.rejects} rejects",
                           frames=self.tally.frames, rejects=self.tally.rejects)
        self.close()

    def _handle(self, event: CaptureEvent | None) -> str | None:
        """Acts on one event from the capture thread; returns why the run ends, if it does."""
        source = self.config.source.kind
        match event:
            case FrameCaptured(frame):
                self.inspect(frame)
            case FrameUnreadable(message, error):
                self.outputs.fault(Fault.FRAME, message, error=error, source=source)
                self.tally.not_judged()
            case SourceDown(message, error):
                self.tally.source_down = True
                self.outputs.fault(Fault.SOURCE, message, error=error, source=source)
            case SourceBack(message):
                self.tally.source_down = False
                self.outputs.event(EventKind.START, message, recovered=Fault.SOURCE)
            case ReplayOver(reason):
                return reason
            case CaptureFailed(error):
                raise located(error, self.config.file)
        return None

    def _tick(self) -> None:
        """The health signals; a ready line or notification that fails is one fault record until it works again."""
        assert self.capture is not None
        try:
            self.health.tick(time.monotonic(), self.capture, self.tally)
        except Exception as exc:  # noqa: BLE001
            if not self.health_failing:
                self.health_failing = True
                self.tally.trouble("health", "ready line failing")
                self.outputs.fault(Fault.HEALTH, f"the ready line or systemd notification failed: {describe(exc)}; retried "
                                                 "every turn, recorded again when it works", exc)
            return
        if self.health_failing:
            self.health_failing = False
            self.tally.trouble("health", "")
            self.outputs.event(EventKind.START, "the ready line and systemd notification work again", recovered=Fault.HEALTH)

    def _done(self, frame: Frame) -> None:
        """The frame's record was handed to the outputs: the source may let go of it (a watched folder moves the file)."""
        done = getattr(frame, "done", None)
        if done is None:
            return
        try:
            done()
        except Exception as exc:  # noqa: BLE001
            self.outputs.fault(Fault.SOURCE, f"{frame.name}: inspected, but the source could not let go of it: {describe(exc)}", exc)

    def _report_close(self, failures: list[Exception]) -> None:
        for exc in failures:
            self.outputs.fault(Fault.OUTPUT, f"an output could not be closed: {describe(exc)}", exc)

    def _print_traceback(self) -> None:
        try:
            traceback.print_exc(file=sys.stderr)
        except Exception:  # noqa: BLE001
            pass

    def _limit_reached(self) -> bool:
        return self.frames_limit is not None and self.tally.frames >= self.frames_limit
