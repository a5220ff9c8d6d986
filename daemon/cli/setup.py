"""``inspectd setup``: setup mode, the camera through the station's source and ROI into the live tap, no model loaded.

    sudo systemctl start inspectd-setup      # as a service (it stops inspectd.service, and inspectd stops it)
    inspectd setup --config station.toml     # in a shell, with [live] path set

Then open the station page (``inspectd web``) to aim, focus and light the part.
"""

from __future__ import annotations

import argparse
import signal
import threading

from inspectd.daemon.station.paths import DEFAULT_PATH


def add_to(commands) -> None:
    parser = commands.add_parser("setup", help="setup mode: the camera through the station's source and ROI on the station page, no model")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE", help=f"default {DEFAULT_PATH}")
    parser.add_argument("--frames", type=int, metavar="N", help="stop after N frames read")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.station.config import load
    from inspectd.daemon.station.setup import run_setup

    config = load(args.config)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    return run_setup(config, stop, args.frames)
