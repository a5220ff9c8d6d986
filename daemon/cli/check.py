"""``inspectd check``: validate the configuration, load the model folder (self-test included), open the GPIO chip
and, for a folder replay, read the first frame through the ROI; then exit. Nothing a running daemon holds is
taken (no camera, no GPIO line), so it can check a new configuration before ``systemctl reload``."""

from __future__ import annotations

import argparse

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.station.config import DEFAULT_PATH


def add_to(commands) -> None:
    parser = commands.add_parser("check", help="validate the configuration and the model folder, then exit")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.station.config import load
    from inspectd.daemon.station.devices import check_chip
    from inspectd.daemon.station.pipeline import build_pipeline
    from inspectd.daemon.station.settings import located

    config = load(args.config)
    pipeline = build_pipeline(config, on_fault=lambda message: None)
    pipeline.close()
    check_chip(config)
    try:
        config.source.sample()  # a folder's first frame through the ROI: does it fit?
    except InspectdError as error:
        raise located(error, config.file) from None
    model = pipeline.model
    folder = model.folder
    print(f"{args.config}: OK: {config.source.kind} source, {config.trigger.kind} trigger, model {folder.path} "
          f"({folder.metadata.model.backbone}, {folder.preprocessing.input_width}x{folder.preprocessing.input_height}, "
          f"threshold {pipeline.decision.threshold:.4f}, model.bin sha256 {model.model_id[:12]}, precision {model.precision})")
    for line in model.precision_report():
        print(f"  {line}")
    return 0
