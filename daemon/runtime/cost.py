"""What a model costs on this device: graph work per frame and the process's peak memory."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np

from inspectd.daemon.runtime.model import Model


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
