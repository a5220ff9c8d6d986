"""``inspectd run``: the station daemon (what the systemd unit starts)."""

from __future__ import annotations

import argparse

from inspectd.daemon.station.config import DEFAULT_PATH


def add_to(commands) -> None:
    parser = commands.add_parser("run", help="the station daemon: capture, inspect, decide, report (systemd service)")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE", help=f"default {DEFAULT_PATH}")
    parser.add_argument("--frames", type=int, metavar="N", help="stop after N verdicts (a directory replay stops at its end anyway)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.station.config import load
    from inspectd.daemon.station.loop import Station

    config = load(args.config)
    return Station(config, config_path=args.config, frames=args.frames).run()
