"""The ``inspectd`` command: one module per command, each with ``add_to(commands)`` and ``run(args)``.

Station commands (run, check, doctor, bench, infer, demo) need only the runtime; the workstation
commands (train, export) import ``inspectd.export`` when they run and say how to install it
when it is missing. Every error a user can cause prints one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.platform_check import problems

# The command modules, in the order `inspectd --help` lists them; imported when the parser is built.
COMMANDS = ("infer", "evaluate", "calibrate", "collect", "workstation", "run", "setup", "check", "install_model", "doctor", "report", "web", "publish",
            "bench", "demo")
# Commands that load their own module only: the station page's and the publisher's processes stay light (no OpenCV,
# numpy or OpenVINO, which the other modules import), within their memory budgets; the station installs its signal
# handlers sooner.
ALONE = {"web": "web", "run": "run", "publish": "publish"}
RUNTIME_PACKAGES = {"openvino", "numpy", "cv2"}


DASH_VALUES = ("--since", "--until")  # their values may start with "-" (a relative time, -8h): argparse would take it for an option


def joined_dash_values(argv: list[str]) -> list[str]:
    """``--since -8h`` as ``--since=-8h``, the one form argparse reads for a value that starts with a dash."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] in DASH_VALUES and arg.startswith("-") and not arg.startswith("--"):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


def at_least_one(unit: str, otherwise: str = ""):
    """An argparse type: a whole number of ``unit``, at least 1 (0 or less would be taken for something else, or fail
    deep inside the command)."""
    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {unit}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{value} {unit}: give at least 1{otherwise}")
        return value
    return whole


def build_parser(modules: tuple[str, ...] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspectd", description="Visual inspection station: PaDiM on OpenVINO.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(f"inspectd.daemon.cli.{name}").add_to(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = joined_dash_values(sys.argv[1:] if argv is None else list(argv))
    args = build_parser((ALONE[argv[0]],) if argv and argv[0] in ALONE else COMMANDS).parse_args(argv)
    try:
        return args.run(args)
    except InspectdError as exc:
        print(f"inspectd: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in RUNTIME_PACKAGES:
            raise
        found = problems()
        fix = found[0] if found else "reinstall the runtime (pip install inspectd, or the inspectd .deb)"
        print(f"inspectd: cannot import {exc.name} ({exc}): {fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `inspectd report | head`: the reader left; nothing more to say, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
