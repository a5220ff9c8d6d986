"""``inspectd install-model NEW_FOLDER``: put a new model folder in the station's place, safely.

    sudo inspectd install-model /home/pi/model-v4       # verify, self-test here, swap, reload the running station

The folder is verified (sha256 of every file), compiled and self-tested on this device with the station's
``[model]`` settings, copied beside the station's model folder, and swapped in by one rename; the running stations
that use the folder are asked to reload (SIGHUP, as ``systemctl reload inspectd``) and waited for. The folder it
replaced is kept as ``<model.path>.previous``. Anything refused leaves everything as it was (``station.install``).
"""

from __future__ import annotations

import argparse

from inspectd.daemon.station.paths import DEFAULT_PATH


def add_to(commands) -> None:
    parser = commands.add_parser("install-model", help="verify, self-test, swap in a new model folder and reload the station")
    parser.add_argument("folder", metavar="NEW_FOLDER", help="the folder written by `inspectd export` or `inspectd train`")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE", help=f"the station's configuration (default {DEFAULT_PATH})")
    parser.add_argument("--no-reload", action="store_true", help="swap only; the station takes it at its next reload or start")
    parser.add_argument("--wait", type=float, default=120.0, metavar="S", help="how long to wait for the stations to reload (default 120)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.station.config import load
    from inspectd.daemon.station.install import describe, install

    config = load(args.config)
    done = install(args.folder, config, reload=not args.no_reload, wait_s=args.wait)
    print(f"verified {args.folder}: model {done.model_id[:12]}, self-test passed here at {done.precision}")
    kept = f"; the one it replaced is kept in {done.previous}" if done.previous else ""
    print(f"installed as {done.target}{kept}")
    if args.no_reload:
        print("not reloaded: `systemctl reload inspectd` (or SIGHUP to the station) makes it take the new model")
        return 0
    if not done.asked:
        print(f"no running station uses {done.target}: it is loaded at the next start")
        return 0
    for pid in done.asked:
        print(f"{describe(pid)}: " + ("reloaded, runs the new model" if pid in done.took else
                                      "did not take it (its journal says why: journalctl -u inspectd)"))
    if done.undone:
        print(f"no station took the new model: {done.target} holds the previous folder again (the new one is kept as "
              f"{done.target}.refused)")
        return 1
    return 0 if set(done.took) == set(done.asked) else 1
