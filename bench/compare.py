"""inspectd against anomalib's own inferencers, in one run, on the same checkpoint and frames.

    python bench/compare.py [--data ../shared/data/cookie] [--checkpoint CKPT] [--rounds 3] [--frames 30]
    python bench/compare.py --precision f32 ...   # every contender compiled at f32 (the Pi's fallback, an AVX2 x86)
    python bench/compare.py --outside [--precision f32] ...   # from outside, as a user runs them (bench/outside.py)

Contenders, each in a process of its own (so memory and cold start are its own), run in
rounds with the order rotated every round (A/B alternation: machine noise hits all alike):

- ``inspectd``: the runtime (``Model.infer``: inspectd's resize + the exported graph)
- ``daemon``: one full station cycle (``Station.inspect``: infer, decide, journal + GPIO +
  in-memory outputs) and the station's pipelined rate (capture thread + inspection loop)
- ``openvino-inferencer``: anomalib's OpenVINOInferencer on anomalib's own OpenVINO export
- ``torch-inferencer``: anomalib's TorchInferencer on anomalib's own torch export
- ``bare-ir``: inspectd's compiled IR fed a ready tensor: the floor

Frames: the data set's test images resized to 900x900 and held in memory (decode
excluded). Measured per contender: per-frame latency (median, p95), frames per second
(sequential, and pipelined where the tool can), peak RSS, cold start (process start to
first verdict) and model size. Printed as a table with the ratios the issue targets, and
written as JSON. Without anomalib (the Pi) it benchmarks inspectd alone and says so.
With no --checkpoint it trains plain anomalib PaDiM (resnet18, random weights, 256x256)
on the data set's train/good, as a supervisor would hand it over.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = ("inspectd", "daemon", "openvino-inferencer", "torch-inferencer", "bare-ir")
NEEDS_ANOMALIB = {"openvino-inferencer", "torch-inferencer"}
FRAME_SIZE = 900


# ---------------------------------------------------------------- preparation (parent)

def prepare(work: Path, data: Path, checkpoint: Path | None, frames: int) -> dict:
    """Checkpoint, the three exports and the frames, cached in ``work``."""
    import cv2

    work.mkdir(parents=True, exist_ok=True)
    frames_file = work / f"frames_{frames}.npy"
    if not frames_file.exists():
        paths = sorted((data / "test").glob("*/*.*"))[:frames]
        stack = [cv2.resize(cv2.imread(str(p)), (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA) for p in paths]
        np.save(frames_file, np.stack(stack))
    paths = {"frames": str(frames_file)}
    has_anomalib = importlib.util.find_spec("anomalib") is not None
    if checkpoint is None:
        checkpoint = work / "model.ckpt"
        if not checkpoint.exists():
            if not has_anomalib:
                raise SystemExit("bench: no --checkpoint and no anomalib to train one; pass --checkpoint or --model")
            from inspectd.export.baseline import train_plain_anomalib

            train_plain_anomalib(data, work, [str(p.relative_to(data)) for p in (data / "test").iterdir() if p.name != "good"])
    paths["checkpoint"] = str(checkpoint)
    model_dir = work / "inspectd-model"
    if not (model_dir / "inspectd.json").exists():
        from inspectd.export.exporter import export_checkpoint

        export_checkpoint(checkpoint, model_dir, calibration_dir=data / "test")
    paths["inspectd_model"] = str(model_dir)
    if has_anomalib:
        paths.update(_anomalib_exports(checkpoint, work))
    return paths


def _anomalib_exports(checkpoint: Path, work: Path) -> dict:
    from anomalib.deploy import ExportType
    from anomalib.engine import Engine
    from anomalib.models import Padim

    exports = {"openvino": work / "anomalib" / "weights" / "openvino" / "model.xml", "torch": work / "anomalib" / "weights" / "torch" / "model.pt"}
    for kind, path in exports.items():
        if not path.exists():
            model = Padim.load_from_checkpoint(checkpoint, map_location="cpu")
            Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=work / "engine").export(
                model, ExportType.OPENVINO if kind == "openvino" else ExportType.TORCH, export_root=work / "anomalib")
    return {f"anomalib_{kind}": str(path) for kind, path in exports.items()}


# ---------------------------------------------------------------- one contender (child)

def _load(contender: str, paths: dict, precision: str):
    """Returns (predict(frame_bgr) -> None, model files, pipelined-fps function or None).

    ``precision``: "auto" (each tool's own choice) or the INFERENCE_PRECISION_HINT asked of every OpenVINO contender.
    """
    if contender == "inspectd":
        from inspectd.daemon.runtime.model import Model

        model = Model.load(paths["inspectd_model"], precision=precision)
        return (lambda frame: model.infer(frame)), _files(paths["inspectd_model"]), None
    if contender == "daemon":
        return _daemon(paths, precision)
    if contender == "bare-ir":
        from inspectd.daemon.runtime.model import Model
        from inspectd.daemon.runtime.preprocess import prepare as preprocess

        model = Model.load(paths["inspectd_model"], precision=precision)  # the same compiled graph and precision as inspectd
        ready = {}

        def infer(frame):
            key = frame.__array_interface__["data"][0]  # the frame's buffer: stable across views
            if key not in ready:  # the floor: the tensor is made once, outside the timing
                ready[key] = preprocess(frame, model.folder.preprocessing)
            model.request.infer({0: ready[key]})
        return infer, _files(paths["inspectd_model"]), None
    if contender == "openvino-inferencer":
        from anomalib.deploy import OpenVINOInferencer

        config = {} if precision == "auto" else {"INFERENCE_PRECISION_HINT": precision}
        inferencer = OpenVINOInferencer(path=paths["anomalib_openvino"], device="CPU", config=config)
        # anomalib takes RGB, 0..1 float (its own read_image output); the conversion is part of using it
        return (lambda frame: inferencer.predict(frame[:, :, ::-1].astype(np.float32) / 255.0)), _files(Path(paths["anomalib_openvino"]).parent), None
    if contender == "torch-inferencer":
        import torch
        from anomalib.deploy import TorchInferencer

        os.environ["TRUST_REMOTE_CODE"] = "1"  # anomalib's torch export is a pickle; it is our own file
        inferencer = TorchInferencer(path=paths["anomalib_torch"], device="cpu")

        def predict(frame):
            with torch.no_grad():
                inferencer.predict(torch.from_numpy(frame[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255.0)
        return predict, _files(Path(paths["anomalib_torch"]).parent), None
    raise SystemExit(f"unknown contender {contender}")


def _daemon(paths: dict, precision: str):
    """The station's own per-frame cycle and its pipelined rate, outputs included."""
    import io

    from inspectd.daemon.station.config import ArchiveConfig, Config, GpioConfig, JournalConfig, ModelConfig, RejectLineConfig
    from inspectd.daemon.station.outputs.journal import JournalOutput
    from inspectd.daemon.station.outputs.memory import MemoryOutput
    from inspectd.daemon.station.sources import DirectoryConfig, Frame
    from inspectd.daemon.station.sources.memory import MemorySource
    from inspectd.daemon.station.loop import Station

    config = Config(model=ModelConfig(path=paths["inspectd_model"], precision=precision), source=DirectoryConfig(path=".", mode="watch"),
                    journal=JournalConfig(enabled=False), archive=ArchiveConfig(enabled=False),
                    gpio=GpioConfig(chip="memory", reject=RejectLineConfig(line="GPIO17", pulse_ms=20)))
    journal = JournalOutput(JournalConfig(), stream=io.StringIO())  # the real formatting, into memory
    memory = MemoryOutput()
    station = Station(config, extra_outputs=[journal, memory])

    def cycle(frame):
        station.inspect(Frame(frame, "bench", time.monotonic()))

    def pipelined(frames: np.ndarray, count: int) -> float:
        runner = Station(config, frames=count, extra_outputs=[MemoryOutput()],
                         open_source=lambda _: MemorySource(list(frames), loop=True))
        start = time.perf_counter()
        runner.run()
        return count / (time.perf_counter() - start)
    return cycle, _files(paths["inspectd_model"]), pipelined


def _files(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.suffix in (".xml", ".bin", ".pt", ".json"))


def run_contender(contender: str, paths: dict, started_at: float, precision: str) -> dict:
    # Imported in the child, before any model loads, alike for every contender: imported at the
    # top, inspectd.daemon would set its OPENBLAS_NUM_THREADS in the parent and so for anomalib too.
    from inspectd.daemon.runtime.cost import peak_rss_mib

    frames = np.load(paths["frames"])
    predict, size, pipelined = _load(contender, paths, precision)
    predict(frames[0])
    cold_start = time.time() - started_at
    for frame in frames:  # warm-up pass over every frame (the floor prepares its tensors here)
        predict(frame)
    latencies = []
    for frame in frames:
        start = time.perf_counter()
        predict(frame)
        latencies.append((time.perf_counter() - start) * 1000.0)
    result = {"contender": contender, "latencies_ms": latencies, "cold_start_s": cold_start, "model_bytes": size,
              "fps_sequential": 1000.0 / statistics.mean(latencies)}
    if pipelined is not None:
        result["fps_pipelined"] = pipelined(frames, len(frames) * 2)
    result["peak_rss_mib"] = peak_rss_mib()
    return result


# ---------------------------------------------------------------- report (parent)

def summarise(runs: list[dict]) -> dict:
    table = {}
    for contender in dict.fromkeys(run["contender"] for run in runs):
        mine = [run for run in runs if run["contender"] == contender]
        latencies = np.concatenate([run["latencies_ms"] for run in mine])
        table[contender] = {
            "latency_median_ms": float(np.median(latencies)),
            "latency_p95_ms": float(np.percentile(latencies, 95)),
            "fps_sequential": float(np.median([run["fps_sequential"] for run in mine])),
            "fps_pipelined": float(np.median([run["fps_pipelined"] for run in mine])) if "fps_pipelined" in mine[0] else None,
            "peak_rss_mib": float(max(run["peak_rss_mib"] for run in mine)),
            "cold_start_s": float(np.median([run["cold_start_s"] for run in mine])),
            "model_mib": mine[0]["model_bytes"] / 2**20,
        }
    return table


def ratios(table: dict) -> list[tuple[str, float, float | None]]:
    """(what, measured ratio, target) for each target the contenders present allow."""
    checks = []
    mine = table.get("inspectd")
    if mine and "openvino-inferencer" in table:
        ov = table["openvino-inferencer"]
        checks += [("latency inspectd / OpenVINOInferencer", mine["latency_median_ms"] / ov["latency_median_ms"], 0.6),
                   ("peak RSS inspectd / OpenVINOInferencer", mine["peak_rss_mib"] / ov["peak_rss_mib"], 0.3),
                   ("cold start inspectd / OpenVINOInferencer", mine["cold_start_s"] / ov["cold_start_s"], 0.25)]
    if mine and "torch-inferencer" in table:
        checks.append(("latency inspectd / TorchInferencer", mine["latency_median_ms"] / table["torch-inferencer"]["latency_median_ms"], 0.25))
    if mine and "daemon" in table:
        checks.append(("daemon cycle / inspectd inference", table["daemon"]["latency_median_ms"] / mine["latency_median_ms"], 1.15))
    if mine and "bare-ir" in table:
        checks.append(("inspectd inference / bare IR (floor)", mine["latency_median_ms"] / table["bare-ir"]["latency_median_ms"], 1.15))
    return checks


def render(table: dict, checks: list, note: str) -> str:
    lines = ["| contender | latency median ms | p95 ms | fps (sequential) | fps (pipelined) | peak RSS MiB | cold start s | model MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        pipelined = f"{row['fps_pipelined']:.1f}" if row["fps_pipelined"] else "-"
        lines.append(f"| {name} | {row['latency_median_ms']:.2f} | {row['latency_p95_ms']:.2f} | {row['fps_sequential']:.1f} | {pipelined} | "
                     f"{row['peak_rss_mib']:.0f} | {row['cold_start_s']:.2f} | {row['model_mib']:.1f} |")
    lines += ["", "| ratio | measured | target |", "|---|---|---|"]
    for what, value, target in checks:
        verdict = "" if target is None else (" (met)" if value <= target else " (NOT met)")
        lines.append(f"| {what} | {value:.3f}{verdict} | {'-' if target is None else f'<= {target}'} |")
    return "\n".join(lines + ([f"\n{note}"] if note else []))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cookie")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/inspectd-bench"), help="cache for the checkpoint, exports and frames")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--outside", action="store_true", help="inspectd infer and OpenVINOInferencer as processes over image files")
    parser.add_argument("--precision", choices=("auto", "f32", "bf16", "f16"),
                        help="asked of every OpenVINO contender (default: auto, each tool's own choice; with --outside f32)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_contender(args.child, json.loads(os.environ["BENCH_PATHS"]), float(os.environ["BENCH_T0"]), args.precision or "auto")))
        return 0
    if not (args.data / "test").is_dir():
        raise SystemExit(f"bench: {args.data}/test not found; pass --data with an MVTec-layout data set")
    paths = prepare(args.work, args.data, args.checkpoint, args.frames)
    if args.outside:
        args.precision = args.precision or "f32"
        return _outside(args, paths)
    precision = args.precision or "auto"
    contenders = [c for c in args.contenders if c not in NEEDS_ANOMALIB or "anomalib_openvino" in paths]
    note = "" if len(contenders) == len(args.contenders) else "anomalib is not installed here: inspectd benchmarked alone."
    runs = []
    for round_number in range(args.rounds):
        order = contenders[round_number % len(contenders):] + contenders[: round_number % len(contenders)]
        for contender in order:
            print(f"bench: round {round_number + 1}/{args.rounds}: {contender}", file=sys.stderr, flush=True)
            env = dict(os.environ, BENCH_PATHS=json.dumps(paths), BENCH_T0=repr(time.time()))
            if contender not in NEEDS_ANOMALIB:
                env.setdefault("OPENBLAS_NUM_THREADS", "1")  # what `import inspectd.daemon` sets before numpy loads
            child = subprocess.run([sys.executable, __file__, "--child", contender, "--precision", precision], env=env,
                                   capture_output=True, text=True)
            if child.returncode != 0:
                raise SystemExit(f"bench: {contender} failed:\n{child.stderr[-3000:]}")
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    table = summarise(runs)
    checks = ratios(table)
    print(f"precision asked of every OpenVINO contender: {precision}")
    print(render(table, checks, note))
    args.json.write_text(json.dumps({"table": table, "ratios": [{"what": w, "value": v, "target": t} for w, v, t in checks],
                                     "frames": args.frames, "rounds": args.rounds, "frame_size": FRAME_SIZE, "precision": precision,
                                     "note": note}, indent=2))
    print(f"bench: wrote {args.json}", file=sys.stderr)
    return 0


def _outside(args: argparse.Namespace, paths: dict) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    import outside

    if "anomalib_openvino" not in paths:
        raise SystemExit("bench: --outside compares with anomalib's OpenVINOInferencer: install anomalib (pip install -e '.[export]')")
    available = sorted((args.data / "test").glob("*/*.*"))
    images = [available[index % len(available)] for index in range(args.frames)]  # more than there are: cycled
    table = outside.measure(paths, images, args.rounds, args.precision)
    checks = outside.ratios(table)
    print(outside.render(table, checks, len(images), args.precision))
    args.json.write_text(json.dumps({"outside": table, "ratios": [{"what": w, "value": v, "target": t} for w, v, t in checks],
                                     "images": len(images), "rounds": args.rounds, "precision": args.precision}, indent=2))
    print(f"bench: wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
