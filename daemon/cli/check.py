"""``inspectd check``: everything ``inspectd run`` would build, built or looked at without side effects: every key
of the configuration, the model folder (loaded, compiled, self-tested), the source (a folder's or video file's first
frame through the ROI; a camera or stream is not opened, and the output says so), the GPIO chip and each configured
line (present and free, from the chip's line info: nothing requested), the archive folder (creatable and writable,
nothing created). Every error is printed, one line each, and the exit status is 78; nothing a running daemon holds
is taken, so it can check a new configuration before ``systemctl reload``."""

from __future__ import annotations

import argparse
import sys

from inspectd.daemon.errors import EX_CONFIG, ConfigError
from inspectd.daemon.station.paths import DEFAULT_PATH


def add_to(commands) -> None:
    parser = commands.add_parser("check", help="validate the configuration and everything it names, then exit")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE")
    parser.set_defaults(run=run)


def print_errors(errors: list[ConfigError]) -> int:
    """Each error on its own line, as the CLI prints one; the status for them all."""
    for error in errors:
        print(f"inspectd: {error}", file=sys.stderr)
    return EX_CONFIG


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.station.preflight import preflight

    report = preflight(args.config)
    if report.errors:
        print("\n".join(f"  {note}" for note in report.notes), end="\n" if report.notes else "")
        return print_errors(report.errors)
    config, model = report.config, report.model
    assert config is not None and model is not None
    folder = model.folder
    print(f"{args.config}: OK: {config.source.kind} source, {config.trigger.kind} trigger, model {folder.path} "
          f"({folder.metadata.model.backbone}, {folder.preprocessing.input_width}x{folder.preprocessing.input_height}, "
          f"model.bin sha256 {model.model_id[:12]}, precision {model.precision})")
    assert report.rule is not None
    print(f"  decides: {report.rule.describe()}")
    for line in [*report.notes, *model.precision_report()]:
        print(f"  {line}")
    return 0
