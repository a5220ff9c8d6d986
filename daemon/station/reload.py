"""SIGHUP (``systemctl reload inspectd``): a plan made off the loop, applied by the loop.

The plan is made on a thread of its own while the loop goes on judging frames with the running
configuration (a model load and its self-test take seconds on a Pi; the watchdog keeps being
fed): the file is verified exactly as a start verifies it (``preflight``: every key, the model
loaded and self-tested, the source's frames against the ROI, the GPIO lines, the archive), then
the new pipeline is built, keeping the outputs whose table did not change. The loop applies a
finished plan (``Station.apply``): devices are reopened only when ``[source]``, ``[trigger]``
or ``[gpio]`` changed. A plan that cannot be made, whatever the error, is refused with a fault
record and the running configuration is kept. Requests that come while a plan is being made are
one more plan, made after it: a burst of SIGHUPs is one reload or two.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inspectd.daemon.station.config import Config
from inspectd.daemon.station.outputs import Notice
from inspectd.daemon.station.pipeline import Pipeline, build_pipeline
from inspectd.daemon.station.preflight import preflight
from inspectd.daemon.station.settings import raise_all

DEVICE_TABLES = ("source", "trigger", "gpio")
KEEPING = "reload failed, keeping the running configuration and model"


def devices_changed(old: Config, new: Config) -> bool:
    return any(getattr(old, table) != getattr(new, table) for table in DEVICE_TABLES)


@dataclass
class Plan:
    pipeline: Pipeline  # built, not started: the loop starts it when it swaps it in
    running: Pipeline  # the one it replaces (some outputs are shared)
    reopen_devices: bool

    @property
    def config(self) -> Config:
        return self.pipeline.config

    def discard(self) -> None:
        """What the plan opened, closed; the outputs it shares with the running pipeline stay open."""
        self.pipeline.close(keep=self.running.outputs)


def make_plan(path: str | Path | None, running: Pipeline, on_fault: Callable[[Notice], None]) -> Plan:
    """The configuration at ``path`` verified as a start verifies it, and its pipeline; raises what is wrong.
    Without a path (an embedder's Config), the running configuration is built again."""
    if path is None:
        return Plan(build_pipeline(running.config, on_fault, reuse=running), running, False)
    report = preflight(path, daemon_may_run=True)  # lines held by this daemon are expected
    raise_all(report.errors)
    assert report.config is not None and report.model is not None
    pipeline = build_pipeline(report.config, on_fault, reuse=running, model=report.model)
    return Plan(pipeline, running, devices_changed(running.config, report.config))


class Reloader:
    """At most one plan in the making; ``take`` hands the loop a finished plan, or the error that refused it."""

    def __init__(self, path: str | Path | None, on_fault: Callable[[Notice], None]) -> None:
        self.path, self.on_fault = path, on_fault
        self.worker: threading.Thread | None = None
        self.outcome: Plan | Exception | None = None
        self.again = False  # asked for while a plan was being made

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def request(self, running: Pipeline) -> bool:
        """Start making a plan against ``running``; False when one is being made (then one more follows it)."""
        if self.worker is not None:
            self.again = True
            return False
        self.worker = threading.Thread(target=self._make, args=(running,), name="inspectd-reload", daemon=True)
        self.worker.start()
        return True

    def take(self) -> Plan | Exception | None:
        """The finished plan or its error, once; None while none is finished."""
        if self.worker is None or self.worker.is_alive():
            return None
        self.worker.join()
        outcome, self.outcome, self.worker = self.outcome, None, None
        return outcome

    def abandon(self, wait_s: float) -> None:
        """At a stop: a plan still being made is waited for at most ``wait_s``, and what it opened is closed."""
        if self.worker is None:
            return
        self.worker.join(max(wait_s, 0.0))
        outcome = self.take()
        if isinstance(outcome, Plan):
            outcome.discard()

    def _make(self, running: Pipeline) -> None:
        try:
            self.outcome = make_plan(self.path, running, self.on_fault)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the new configuration, the running one stays
            self.outcome = exc
