"""``inspectd run``: the station daemon (what the systemd unit starts).

Before anything starts, it verifies what ``inspectd check`` verifies, so a configuration ``check`` accepts starts,
and one it refuses exits 78 with the same lines (the station then loads the model again: one more load at start,
for one definition of what is checked).
"""

from __future__ import annotations

import argparse

from inspectd.daemon.station.config import DEFAULT_PATH


def add_to(commands) -> None:
    parser = commands.add_parser("run", help="the station daemon: capture, inspect, decide, report (systemd service)")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE", help=f"default {DEFAULT_PATH}")
    parser.add_argument("--frames", type=int, metavar="N", help="stop after N verdicts (a directory replay stops at its end anyway)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.cli.check import print_errors
    from inspectd.daemon.station.loop import Station
    from inspectd.daemon.station.preflight import preflight

    report = preflight(args.config, daemon_may_run=False)  # lines held by another inspectd: an error, as requesting them would be
    if report.errors:
        return print_errors(report.errors)
    config = report.config
    del report  # its model goes before the station loads its own
    assert config is not None
    return Station(config, config_path=args.config, frames=args.frames).run()
