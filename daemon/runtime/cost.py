"""What a model costs on this device: graph work per frame and the process's peak memory."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspectd.daemon.runtime.openvino_import import import_openvino

# A Raspberry Pi 5, from published figures: 4 Cortex-A76 cores at 2.4 GHz, each with two 128-bit NEON FMA pipes
# (153.6 GFLOP/s peak at f32; twice that at f16, ARMv8.2 half-precision arithmetic), and LPDDR4X-4267 on a 32-bit
# bus (17 GB/s peak). Assumed sustained: a quarter of the compute peak on these small convolutions, half the memory
# peak for the constants, which the graph reads once a frame (the head's statistics are most of them).
PI5_GFLOPS = {"f32": 38.0, "f16": 76.0}
PI5_MB_PER_S = 8500.0
PI5_BASIS = ("Pi 5 projection: 2 x GMAC / 38 GFLOP/s at f32 (76 at f16; layers kept at f32 count at 38) "
             "+ model.bin MB / 8.5 GB/s; a quarter of the A76 cores' compute peak, half the memory peak")
COUNTED = ("Convolution", "GroupConvolution", "MatMul")


@dataclass(frozen=True)
class GraphCost:
    """A model folder's work per frame, counted on its IR: what the Pi 5 projection rests on."""

    gmac: float  # multiply-adds in convolutions and matrix products (the rest is small beside them)
    gmac_kept_f32: float  # of them, in the layers the folder keeps at f32 at every precision
    weights_mb: float  # model.bin: the constants, read once a frame

    def pi5_ms(self, precision: str) -> float:
        """Projected graph time on a Raspberry Pi 5 at ``precision`` (f32 or f16): PI5_BASIS."""
        reduced = self.gmac - self.gmac_kept_f32 if precision == "f16" else 0.0
        seconds = 2 * (self.gmac - reduced) / PI5_GFLOPS["f32"] + 2 * reduced / PI5_GFLOPS["f16"] + self.weights_mb / PI5_MB_PER_S
        return seconds * 1000.0


def graph_cost(folder: Path) -> GraphCost:
    """A model folder's GraphCost, from its model.xml as exported (the layers marked "precise" are those kept at f32)."""
    ov = import_openvino()

    macs = kept = 0
    for op in ov.Core().read_model(Path(folder) / "model.xml").get_ordered_ops():
        kind = op.get_type_name()
        if kind not in COUNTED or not (op.get_input_partial_shape(0).is_static and op.get_input_partial_shape(1).is_static):
            continue
        out = int(np.prod(list(op.get_output_shape(0))))
        if kind == "MatMul":
            first = list(op.get_input_shape(0))
            per_output = first[-2] if op.get_attributes().get("transpose_a") else first[-1]
        else:  # weights: (out, in, kh, kw), grouped (groups, out, in, kh, kw)
            per_output = int(np.prod(list(op.get_input_shape(1))[1 if kind == "Convolution" else 2:]))
        macs += out * per_output
        kept += out * per_output if "DisablePrecisionConversion_0" in op.get_rt_info() else 0  # how the IR keeps "precise"
    return GraphCost(macs / 1e9, kept / 1e9, (Path(folder) / "model.bin").stat().st_size / 1e6)


def peak_rss_mib() -> float:
    """VmHWM: this process image's peak resident set. (getrusage's ru_maxrss survives exec and
    would report a parent's peak, e.g. a benchmark driver that loaded torch.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
