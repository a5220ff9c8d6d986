"""The ``inspectd`` command: one module per command, each with ``add_to(commands)`` and ``run(args)``.

Station commands (run, check, doctor, bench, infer, demo) need only the runtime; the workstation
commands (train, export) import ``inspectd.export`` when they run and say how to install it
when it is missing. Every error a user can cause prints one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys

from inspectd.daemon.cli import bench, calibrate, check, collect, demo, doctor, evaluate, infer, install_model, report, run, workstation
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.platform_check import problems

COMMANDS = (infer, evaluate, calibrate, collect, workstation, run, check, install_model, doctor, report, bench, demo)
RUNTIME_PACKAGES = {"openvino", "numpy", "cv2"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspectd", description="Visual inspection station: PaDiM on OpenVINO.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_to(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
