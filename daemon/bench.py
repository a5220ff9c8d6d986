"""``inspectd bench MODEL_DIR``: the figures to check on the station itself (no torch needed).

Prints the OpenVINO device and the inference precision in use (ARM defaults to f16, x86 to
bf16 where the CPU has it: inspectd uses only precisions the export verified), compile time,
pre-processing and inference latency (median, p95) for frames of the camera's size, the
frame rate, peak memory, and the graph's cost per frame (multiply-accumulates counted from
the graph's convolutions and matrix products, and the bytes of weights read) from which
README.md projects each configuration's latency on a Raspberry Pi 5.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np

from .model import Model
from .preprocess import prepare


def graph_cost(model: Model) -> tuple[float, float]:
    """(GMACs, MB of constants) per frame, counted on the compiled graph's runtime model."""
    macs = 0
    for op in model.compiled.get_runtime_model().get_ordered_ops():
        kind = op.get_rt_info()["layerType"].astype(str) if "layerType" in op.get_rt_info() else op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Gemm"):
            continue
        if op.get_input_size() < 2 or not op.get_input_partial_shape(1).is_static:
            continue
        out = int(np.prod(list(op.get_output_shape(0))))
        weights = list(op.get_input_shape(1))
        if kind in ("Convolution", "GroupConvolution"):
            per_output = int(np.prod(weights[1:])) if kind == "Convolution" else int(np.prod(weights[2:]))
        else:
            per_output = weights[-1] if len(weights) == 2 else weights[-2]
        macs += out * per_output
    constant_bytes = (model.folder.path / "model.bin").stat().st_size
    return macs / 1e9, constant_bytes / 1e6


def peak_rss_mib() -> float:
    """VmHWM: this process image's peak resident set. (getrusage's ru_maxrss survives exec and
    would report a parent's peak, e.g. a benchmark driver that loaded torch.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(model_dir: str, width: int, height: int, frames: int, precision: str) -> str:
    import openvino as ov

    start = time.perf_counter()
    model = Model.load(model_dir, precision=precision)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
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
    gmacs, megabytes = graph_cost(model)
    core = ov.Core()
    meta = model.folder.metadata
    lines = [
        f"model        {model.folder.path}: PaDiM {meta['model']['backbone']} {spec.input_width}x{spec.input_height}, "
        f"{meta['model']['feature_positions']} positions x {meta['model']['n_features']} features",
        f"openvino     {ov.__version__}, device CPU: {core.get_property('CPU', 'FULL_DEVICE_NAME')}",
        f"precision    {model.precision} in use (OpenVINO's own default here: "
        f"{core.get_property('CPU', 'INFERENCE_PRECISION_HINT').get_type_name()}; verified at export: "
        f"{', '.join(model.folder.verified_precisions)})",
        *(f"             {line}" for line in model.precision_report()),
        f"load         {load_s:.2f} s: read + sha256 {model.timings['read_s']:.2f} s, compile {model.timings['compile_s']:.2f} s, "
        f"self-test {model.timings['self_test_s']:.2f} s",
        f"frame        {width}x{height}, {frames} frames after 3 warm-up",
        f"pre-process  median {np.median(pre):.2f} ms, p95 {np.percentile(pre, 95):.2f} ms",
        f"infer        median {np.median(total):.2f} ms, p95 {np.percentile(total, 95):.2f} ms (pre-process + graph), "
        f"{1000 / np.mean(total):.1f} frames/s",
        f"graph cost   {gmacs:.2f} GMAC per frame, {megabytes:.0f} MB of weights on disk (read every frame: the Mahalanobis step)",
        f"peak memory  {peak_rss_mib():.0f} MiB",
    ]
    return "\n".join(lines)
