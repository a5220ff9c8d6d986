"""SIGHUP (``systemctl reload inspectd``): re-read the configuration and the model, swap them in.

A configuration or model that cannot be used, whatever the error, is refused with a fault
record and the running ones are kept. Outputs whose table did not change are kept as they are
(``pipeline``). The devices (GPIO lines, the trigger) and the capture thread are reopened only
when ``[source]``, ``[trigger]`` or ``[gpio]`` changed, after the frames already captured got
their verdicts; if the new devices cannot be opened, the old ones are opened again and the
reload is refused. Only if even they cannot be reopened does the run end.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.station.config import Config, load
from inspectd.daemon.station.devices import Devices, open_devices
from inspectd.daemon.station.outputs import EventKind, Fault, describe
from inspectd.daemon.station.pipeline import Pipeline, build_pipeline

if TYPE_CHECKING:
    from inspectd.daemon.station.loop import Station

DEVICE_TABLES = ("source", "trigger", "gpio")
KEEPING = "reload failed, keeping the running configuration and model"


def devices_changed(old: Config, new: Config) -> bool:
    return any(getattr(old, table) != getattr(new, table) for table in DEVICE_TABLES)


def reload(station: Station) -> None:
    station.health.reloading()
    try:
        config = load(station.config_path) if station.config_path else station.config
        pipeline = build_pipeline(config, station.notices.put, reuse=station.pipeline)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the new configuration, the running one stays
        refuse(station, exc)
        return
    devices: Devices | None = None
    if devices_changed(station.config, config):
        devices = reopen_devices(station, config, pipeline)
        if devices is None:
            return
    station.swap(pipeline, devices)
    model = pipeline.model
    pipeline.announce(station.outputs, EventKind.RELOAD,
                      f"reloaded {station.config_path}: model {model.model_id[:12]} at {model.precision}")
    station.health.reloaded(station.tally.status(time.monotonic()))
    if devices is not None:
        station.start_capture()


def reopen_devices(station: Station, config: Config, pipeline: Pipeline) -> Devices | None:
    """The new devices, or None when they cannot be opened (the old ones are back then, and the reload refused)."""
    station.stop_capture()
    station.devices.close()
    try:
        return open_devices(config)
    except Exception as exc:  # noqa: BLE001
        pipeline.close(keep=station.pipeline.outputs)
        station.devices = open_devices(station.config)  # raises if even the old ones are gone: the run ends
        station.wire()
        refuse(station, exc)
        station.start_capture()
        return None


def refuse(station: Station, exc: Exception) -> None:
    text = str(exc) if isinstance(exc, InspectdError) else describe(exc)
    station.outputs.fault(Fault.RELOAD, f"{KEEPING}: {text}", exc)
    station.health.reloaded(station.tally.status(time.monotonic()))
