"""The inspection loop: source -> trigger -> model -> decision -> outputs, as a systemd service.

A capture thread takes the next frame while the main loop scores the current one (a queue
of one between them). The main loop alone pings the systemd watchdog and toggles the ready
line, and only while the capture thread is making progress: a hung camera or a hung
inference stops both, so systemd restarts the service and the PLC sees the inspector down.

Signals: SIGTERM/SIGINT stop after the frames already captured; SIGHUP re-reads the
configuration and the model and swaps them in, keeping the running ones if the new are bad.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.station.config import Config, load
from inspectd.daemon.station.decision import Decision
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.station.notify import Notifier
from inspectd.daemon.station.outputs import Output
from inspectd.daemon.station.sources import BadFrame, SourceEnded, SourceFault, open_source
from inspectd.daemon.station.verdict import Verdict

HEARTBEAT_STALE_S = 1.0  # capture silent this long: the ready line stops
QUEUE_POLL_S = 0.1


def _line(name: str) -> str | int:
    return int(name) if name.isdigit() else name


@dataclass
class Brain:
    """What a reload may replace freely: the model, the decision and the software outputs."""

    config: Config
    model: Model
    decision: Decision
    outputs: list[Output]


@dataclass
class Hardware:
    """What touches devices: GPIO lines and the trigger. Rebuilt on reload only if its config changed."""

    gpio: object | None = None
    reject: Output | None = None
    heartbeat: object | None = None
    trigger: object | None = None

    def close(self) -> None:
        for part in (self.trigger, self.reject, self.heartbeat, self.gpio):
            if part is not None:
                part.close()


def build_brain(config: Config, extra_outputs: list[Output], on_fault) -> Brain:
    from inspectd.daemon.station.outputs.journal import JournalOutput

    try:
        model = Model.load(config.model.path, config.model.device, config.model.precision)
    except ConfigError:
        raise
    except InspectdError as exc:
        raise ConfigError(f"{config.file}: model.path: {exc}") from None
    threshold = config.model.threshold if config.model.threshold is not None else model.threshold
    outputs: list[Output] = []
    if config.archive.enabled:
        from inspectd.daemon.station.outputs.archive import ArchiveOutput

        outputs.append(ArchiveOutput(config.archive, on_fault))
    if config.journal.enabled:
        outputs.append(JournalOutput(config.journal))
    return Brain(config, model, Decision(threshold, config.decision), outputs + list(extra_outputs))


def build_hardware(config: Config) -> Hardware:
    hardware = Hardware()
    try:
        if config.gpio is not None:
            from inspectd.daemon.gpio import open_backend

            hardware.gpio = open_backend(config.gpio.chip)  # errors name gpio.chip
            if config.gpio.reject.line:
                from inspectd.daemon.gpio.reject import RejectPulse
                from inspectd.daemon.station.outputs.reject import RejectOutput

                line = hardware.gpio.output(_line(config.gpio.reject.line), active_low=config.gpio.reject.active_low, consumer="inspectd-reject", key="gpio.reject.line")
                hardware.reject = RejectOutput(RejectPulse(line, config.gpio.reject.pulse_ms))
            if config.gpio.ready.line:
                from inspectd.daemon.gpio.heartbeat import Heartbeat

                line = hardware.gpio.output(_line(config.gpio.ready.line), active_low=config.gpio.ready.active_low, consumer="inspectd-ready", key="gpio.ready.line")
                hardware.heartbeat = Heartbeat(line, config.gpio.ready.period_ms)
        trigger = config.trigger
        if trigger.kind == "gpio":
            from inspectd.daemon.gpio.sensor import PartSensor
            from inspectd.daemon.station.triggers.gpio import GpioTrigger

            line = hardware.gpio.input(_line(trigger.line), active_low=trigger.active_low, bias=trigger.bias, key="trigger.line")
            hardware.trigger = GpioTrigger(PartSensor(line, trigger.debounce_ms))
        elif trigger.kind == "interval":
            from inspectd.daemon.station.triggers.interval import IntervalTrigger

            hardware.trigger = IntervalTrigger(trigger.interval_ms)
        else:
            from inspectd.daemon.station.triggers.continuous import ContinuousTrigger

            hardware.trigger = ContinuousTrigger()
    except BaseException:
        hardware.close()
        raise
    return hardware


class Capturer(threading.Thread):
    """Waits for the trigger, reads frames, and hands them over; reopens a failing source with backoff."""

    def __init__(self, config: Config, trigger, open_source=open_source) -> None:
        super().__init__(name="capture", daemon=True)
        self.config, self.trigger, self.open_source = config, trigger, open_source
        self.items: queue.Queue = queue.Queue(maxsize=1)
        self.stopping = threading.Event()
        self.opened = threading.Event()  # the source was opened at least once
        self.alive_at = time.monotonic()

    def run(self) -> None:
        source, delay, faulted = None, 1.0, False
        while not self.stopping.is_set():
            self.alive_at = time.monotonic()
            try:
                if source is None:
                    source = self.open_source(self.config.source)
                    self.opened.set()
                    if faulted:
                        self._hand_over(("restored", f"{source.name} is back"))
                    delay, faulted = 1.0, False
                if not self.trigger.wait(QUEUE_POLL_S):
                    continue
                frame = source.read(QUEUE_POLL_S)
                self.alive_at = time.monotonic()
                if frame is not None:
                    self._hand_over(("frame", frame))
            except BadFrame as exc:
                self._hand_over(("bad_frame", str(exc)))
            except SourceEnded as exc:
                self._hand_over(("end", str(exc)))
                break
            except SourceFault as exc:
                self._hand_over(("fault", f"{exc}; retrying in {delay:.0f} s"))
                if source is not None:
                    source.close()
                source, faulted = None, True
                self._sleep(delay)
                delay = min(delay * 2, self.config.source.retry_max_s)
            except InspectdError as exc:
                self._hand_over(("fatal", exc))
                break
        if source is not None:
            source.close()

    def _hand_over(self, item) -> None:
        while not self.stopping.is_set():
            self.alive_at = time.monotonic()  # waiting for the main loop is not hanging
            try:
                self.items.put(item, timeout=QUEUE_POLL_S)
                return
            except queue.Full:
                continue

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping.is_set() and time.monotonic() < end:
            self.alive_at = time.monotonic()
            self.stopping.wait(min(QUEUE_POLL_S, end - time.monotonic()))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


class Station:
    """
        >>> station = Station(load("/etc/inspectd/inspectd.toml"))   # doctest: +SKIP
        >>> exit_code = station.run()                                # doctest: +SKIP
    """

    def __init__(self, config: Config, config_path: str | Path | None = None, frames: int | None = None,
                 extra_outputs: list[Output] = (), notifier: Notifier | None = None, open_source=open_source) -> None:
        self.config_path = config_path
        self.open_source = open_source  # how the capture thread opens config.source (tests and benchmarks pass their own)
        self.frames_limit = frames
        self.extra_outputs = list(extra_outputs)
        self.notifier = notifier or Notifier()
        watchdog = self.notifier.watchdog_interval_s
        self.hang_timeout_s = watchdog * 2 if watchdog else 5.0  # half of WATCHDOG_USEC
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.brain = build_brain(config, self.extra_outputs, self._archive_fault)
        try:
            self.hardware = build_hardware(config)
        except BaseException:
            self._close_outputs(self.brain.outputs)
            raise
        self.frame_number = 0
        self.rejects = 0
        self.started = time.monotonic()
        self.last_status = 0.0
        self.last_verdict: Verdict | None = None
        self.ready = False
        self.source_down = False
        self.archive_faults: queue.Queue = queue.Queue()

    def _archive_fault(self, message: str) -> None:
        self.archive_faults.put(message)  # reported from the main loop, in order with verdicts

    @property
    def outputs(self) -> list[Output]:
        return ([self.hardware.reject] if self.hardware.reject else []) + self.brain.outputs

    def request_stop(self, *_: object) -> None:
        self.stop_requested.set()

    def request_reload(self, *_: object) -> None:
        self.reload_requested.set()

    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGHUP, self.request_reload)
        model = self.brain.model
        self._event("start", f"started: model {model.model_id[:12]} at {model.precision}, source {self.brain.config.source.kind}, "
                             f"trigger {self.brain.config.trigger.kind}", model=model.model_id, precision=model.precision)
        self._report_precision(model)
        capturer = Capturer(self.brain.config, self.hardware.trigger, self.open_source)
        capturer.start()
        exit_code, reason = 0, "stopped"
        try:
            while not self.stop_requested.is_set():
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    capturer = self._reload(capturer)
                try:
                    kind, payload = capturer.items.get(timeout=QUEUE_POLL_S)
                except queue.Empty:
                    kind, payload = None, None
                    if not capturer.is_alive():
                        raise InspectdError("the capture thread died unexpectedly (see the traceback above); restarting is up to systemd", exit_code=1)
                self._tick(capturer)
                if kind == "frame":
                    self.inspect(payload)
                elif kind in ("fault", "bad_frame"):
                    self.source_down = self.source_down or kind == "fault"
                    self._event("fault", str(payload), source=self.brain.config.source.kind)
                elif kind == "restored":
                    self.source_down = False
                    self._event("start", str(payload))
                elif kind == "end":
                    reason = str(payload)
                    break
                elif kind == "fatal":
                    raise payload
                while not self.archive_faults.empty():
                    self._event("fault", self.archive_faults.get())
                if self.frames_limit is not None and self.frame_number >= self.frames_limit:
                    reason = f"inspected the {self.frames_limit} frames asked for"
                    break
        except InspectdError as exc:
            self._event("fault", str(exc))
            exit_code, reason = exc.exit_code, f"stopped by an error: {exc}"
        finally:
            self.notifier.stopping(f"stopping: {reason}")
            capturer.stop()
            self._drain(capturer)
            self._event("stop", f"stopped ({reason}): {self.frame_number} frames, {self.rejects} rejects",
                        frames=self.frame_number, rejects=self.rejects)
            self._close_outputs(self.brain.outputs)
            self.hardware.close()
        return exit_code

    def _drain(self, capturer: Capturer) -> None:
        """Frames already captured still get their verdict: a part that was seen is never dropped."""
        while True:
            try:
                kind, payload = capturer.items.get_nowait()
            except queue.Empty:
                return
            if kind == "frame" and (self.frames_limit is None or self.frame_number < self.frames_limit):
                self.inspect(payload)

    def _tick(self, capturer: Capturer) -> None:
        now = time.monotonic()
        if not self.ready and capturer.opened.is_set() and self._frames_on_demand():
            # Frames come only when a part does: waiting for the first one would keep systemd
            # waiting for READY=1 on an idle line until TimeoutStartSec, then restart us.
            self.ready = True
            self.notifier.ready(self._status_text(now))
        stale = now - capturer.alive_at
        if stale < self.hang_timeout_s:
            self.notifier.watchdog(now)
        if self.hardware.heartbeat is not None:
            if stale < HEARTBEAT_STALE_S and self.ready and not self.source_down:
                self.hardware.heartbeat.healthy()
                self.hardware.heartbeat.tick(now)
            else:
                self.hardware.heartbeat.fault()
        if now - self.last_status >= 1.0 and self.ready:
            self.last_status = now
            self.notifier.status(self._status_text(now))

    def _frames_on_demand(self) -> bool:
        """A GPIO trigger or a watched folder: READY=1 once the model is compiled and the source open."""
        config = self.brain.config
        return config.trigger.kind == "gpio" or (config.source.kind == "directory" and config.source.mode == "watch")

    def _status_text(self, now: float) -> str:
        rate = self.frame_number / max(now - self.started, 1e-9)
        last = self.last_verdict
        tail = f", last {last.verdict} {last.score:.2f}/{last.threshold:.2f}" if last else ""
        state = "source down, retrying" if self.source_down else "inspecting"
        return f"{state}: {rate:.1f} frames/s, {self.frame_number} frames, {self.rejects} rejects{tail}"

    def inspect(self, frame) -> Verdict | None:
        """One station cycle for a frame in memory: infer, decide, every output. None if it could not be scored."""
        brain = self.brain
        start = time.perf_counter()
        try:
            inspection = brain.model.infer(frame.pixels, frame.name)
        except InspectdError as exc:
            self._event("fault", f"{frame.name}: {exc}")
            return None
        verdict_text, area = brain.decision(inspection)
        self.frame_number += 1
        verdict = Verdict(
            frame=self.frame_number, source=frame.name, verdict=verdict_text, score=inspection.score,
            threshold=brain.decision.threshold, latency_ms=(time.perf_counter() - start) * 1000.0,
            model_id=brain.model.model_id, defect_area=area, inspection=inspection, pixels=frame.pixels,
        )
        self.rejects += verdict.rejected
        for output in self.outputs:
            output.verdict(verdict)
        self.last_verdict = verdict
        if not self.ready:
            self.ready = True
            self.notifier.ready(self._status_text(time.monotonic()))
        return verdict

    def _event(self, kind: str, message: str, **fields: object) -> None:
        for output in self.outputs:
            output.event(kind, message, **fields)

    def _reload(self, capturer: Capturer) -> Capturer:
        self.notifier.reloading()
        try:
            config = load(self.config_path) if self.config_path else self.brain.config
            brain = build_brain(config, self.extra_outputs, self._archive_fault)
        except InspectdError as exc:
            self._event("fault", f"reload failed, keeping the running configuration and model: {exc}")
            self.notifier.ready(self._status_text(time.monotonic()))
            return capturer
        old = self.brain
        hardware_changed = any(getattr(config, part) != getattr(old.config, part) for part in ("source", "trigger", "gpio"))
        if hardware_changed:
            capturer.stop()
            self._drain(capturer)
            self.hardware.close()
            self.hardware = build_hardware(config)  # an error here ends the run; systemd restarts with the new config
        self.brain = brain
        self._close_outputs([o for o in old.outputs if o not in self.extra_outputs])
        self._event("reload", f"reloaded {self.config_path}: model {brain.model.model_id[:12]} at {brain.model.precision}",
                    model=brain.model.model_id, precision=brain.model.precision)
        self._report_precision(brain.model)
        self.notifier.ready(self._status_text(time.monotonic()))
        if hardware_changed:
            capturer = Capturer(config, self.hardware.trigger, self.open_source)
            capturer.start()
        return capturer

    def _report_precision(self, model: Model) -> None:
        if model.fallback:
            failed = ", ".join(t.requested for t in model.trials if not t.passed)
            self._event("precision", f"{model.folder.path}: {model.fallback}", failed=failed, precision=model.precision)

    def _close_outputs(self, outputs: list[Output]) -> None:
        for output in outputs:
            output.close()

