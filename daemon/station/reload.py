"""SIGHUP (``systemctl reload inspectd``): re-read the configuration and the model, swap them in.

A configuration or model that is bad is refused with a fault record and the running ones
are kept. The devices (GPIO lines, the trigger) and the capture thread are reopened only when
``[source]``, ``[trigger]`` or ``[gpio]`` changed, after the frames already captured got their
verdicts; an error opening the new devices ends the run (systemd restarts the service, with
the new configuration).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.station.config import Config, load
from inspectd.daemon.station.devices import Devices, open_devices
from inspectd.daemon.station.outputs import EventKind
from inspectd.daemon.station.pipeline import build_pipeline

if TYPE_CHECKING:
    from inspectd.daemon.station.loop import Station

DEVICE_TABLES = ("source", "trigger", "gpio")


def devices_changed(old: Config, new: Config) -> bool:
    return any(getattr(old, table) != getattr(new, table) for table in DEVICE_TABLES)


def reload(station: Station) -> None:
    station.health.reloading()
    try:
        config = load(station.config_path) if station.config_path else station.config
        pipeline = build_pipeline(config, station.archive_faults.put)
    except InspectdError as exc:
        station.outputs.event(EventKind.FAULT, f"reload failed, keeping the running configuration and model: {exc}")
        station.health.reloaded(station.tally.status(time.monotonic()))
        return
    devices: Devices | None = None
    if devices_changed(station.config, config):
        station.stop_capture()
        station.devices.close()
        try:
            devices = open_devices(config)
        except BaseException:
            pipeline.close()
            raise
    station.swap(pipeline, devices)
    model = pipeline.model
    pipeline.announce(station.outputs, EventKind.RELOAD, f"reloaded {station.config_path}: model {model.model_id[:12]} at {model.precision}")
    station.health.reloaded(station.tally.status(time.monotonic()))
    if devices is not None:
        station.start_capture()
