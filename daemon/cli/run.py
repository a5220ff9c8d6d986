"""``inspectd run``: the station daemon (what the systemd unit starts).

Before anything starts, it verifies what ``inspectd check`` verifies, so a configuration ``check`` accepts starts,
and one it refuses exits 78 with the same lines; the model check loaded is the one the station runs. The signal
handlers come first (``station.signals``): a signal while the model loads is a request, never the end of the process.
"""

from __future__ import annotations

import argparse

from inspectd.daemon.cli import at_least_one
from inspectd.daemon.station.paths import DEFAULT_PATH


def add_to(commands) -> None:
    parser = commands.add_parser("run", help="the station daemon: capture, inspect, decide, report (systemd service)")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE", help=f"default {DEFAULT_PATH}")
    parser.add_argument("--frames", type=at_least_one("frames", ", or leave --frames out to run until stopped"), metavar="N",
                        help="stop after N verdicts (a directory replay stops at its end anyway)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.cli.check import print_errors
    from inspectd.daemon.station.loop import Station
    from inspectd.daemon.station.preflight import preflight
    from inspectd.daemon.station.signals import Requests

    requests = Requests()
    requests.install()  # first: a SIGHUP or SIGTERM while the model loads is a request, not the end of the process
    report = preflight(args.config, daemon_may_run=False)  # lines held by another inspectd: an error, as requesting them would be
    if report.errors:
        return print_errors(report.errors)
    assert report.config is not None
    return Station(report.config, config_path=args.config, frames=args.frames, requests=requests, model=report.model).run()
