"""``inspectd bench MODEL_DIR``: the figures to check on the station itself (no torch needed).

Prints the OpenVINO device, the inference precision in use and how the load chose it (the
self-test at each precision tried; OpenVINO's own default: f16 on ARM), load time split into
read, compile and self-test, pre-processing and inference latency (median, p95) for frames of
the camera's size, the frame rate, peak memory, and the speed table of README.md's "What a Raspberry
Pi 5 should reach" for this folder: the graph's cost per frame, the latency measured here, and the Pi 5
projection at f32 and f16 from that cost (``runtime.cost``). On a Pi, compare the two.
"""

from __future__ import annotations

import argparse
import platform
import time

from inspectd.daemon.cli import at_least_one
from inspectd.daemon.runtime.openvino_import import import_openvino

# README.md's table ("What a Raspberry Pi 5 should reach") has these columns; `inspectd bench` prints its row.
TABLE_HEADER = ("| configuration | GMAC a frame (kept at f32) | model.bin MB | measured ms (precision, machine) "
                "| Pi 5 f32 ms (projected) | Pi 5 f16 ms (projected) |")


def add_to(commands) -> None:
    parser = commands.add_parser("bench", help="latency, precision and memory of a model folder on this device")
    parser.add_argument("model_dir", metavar="MODEL_DIR")
    parser.add_argument("--width", type=at_least_one("pixels"), default=1536, help="frame width (the camera's; default 1536)")
    parser.add_argument("--height", type=at_least_one("pixels"), default=864)
    parser.add_argument("--frames", type=at_least_one("frames"), default=50)
    parser.add_argument("--precision", default="auto", choices=("auto", "f32", "bf16", "f16"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(measure(args.model_dir, args.width, args.height, args.frames, args.precision))
    return 0


def measure(model_dir: str, width: int, height: int, frames: int, precision: str) -> str:
    import numpy as np
    ov = import_openvino()

    from inspectd.daemon import schema
    from inspectd.daemon.runtime.cost import PI5_BASIS, graph_cost, peak_rss_mib
    from inspectd.daemon.runtime.model import Model
    from inspectd.daemon.runtime.selftest_memory import SelfTestMemory
    from inspectd.daemon.runtime.preprocess import prepare

    start = time.perf_counter()
    model = Model.load(model_dir, precision=precision, memory=SelfTestMemory.default())
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (height, width, 3) if model.color == schema.RGB else (height, width), dtype=np.uint8)  # of the folder's mode
    spec = model.folder.preprocessing
    for _ in range(3):
        model.infer(frame)
    pre, total = [], []
    for _ in range(frames):
        t0 = time.perf_counter()
        prepare(frame, spec)
        t1 = time.perf_counter()
        model.infer(frame)
        t2 = time.perf_counter()
        pre.append((t1 - t0) * 1000)
        total.append((t2 - t1) * 1000)
    cost = graph_cost(model.folder.path)
    core = ov.Core()
    meta = model.folder.metadata
    lines = [
        f"model        {model.folder.path}: PaDiM {meta.model.backbone} {spec.input_width}x{spec.input_height}, "
        f"{meta.model.feature_positions} positions x {meta.model.n_features} features",
        f"openvino     {ov.__version__}, device CPU: {core.get_property('CPU', 'FULL_DEVICE_NAME')}",
        f"precision    {model.precision} in use (OpenVINO's own default here: "
        f"{core.get_property('CPU', 'INFERENCE_PRECISION_HINT').get_type_name()}; verified at export: "
        f"{', '.join(meta.runtime.verified_precisions)})",
        *(f"             {line}" for line in model.precision_report()),
        f"load         {load_s:.2f} s: read + sha256 {model.timings['read_s']:.2f} s, compile {model.timings['compile_s']:.2f} s, "
        f"self-test {model.timings['self_test_s']:.2f} s",
        f"frame        {width}x{height}, {frames} frames after 3 warm-up",
        f"pre-process  median {np.median(pre):.2f} ms, p95 {np.percentile(pre, 95):.2f} ms",
        f"infer        median {np.median(total):.2f} ms, p95 {np.percentile(total, 95):.2f} ms (pre-process + graph), "
        f"{1000 / np.mean(total):.1f} frames/s",
        f"graph cost   {cost.gmac:.3f} GMAC per frame ({cost.gmac_kept_f32:.3f} in layers kept at f32), "
        f"{cost.weights_mb:.1f} MB of constants (model.bin, read once a frame: mostly the Mahalanobis step)",
        f"peak memory  {peak_rss_mib():.0f} MiB",
        "",
        TABLE_HEADER,
        "|---|---|---|---|---|---|",
        f"| {meta.model.backbone} / {spec.input_width}x{spec.input_height} | {cost.gmac:.3f} ({cost.gmac_kept_f32:.3f}) | "
        f"{cost.weights_mb:.1f} | {np.median(total):.1f} ({model.precision}, {platform.machine()}) | {cost.pi5_ms('f32'):.1f} | "
        f"{cost.pi5_ms('f16'):.1f} |",
        f"({PI5_BASIS})",
    ]
    return "\n".join(lines)
