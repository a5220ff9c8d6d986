"""The exported graph: anomalib's PaDiM with the pre-processing the daemon cannot skip folded in.

Input: one frame already resized (and centre-cropped) by the daemon, (1, H, W, 3) float32,
BGR, 0..255: what OpenCV and the cameras give. Inside: BGR->RGB and the training
normalisation, the backbone, PaDiM's embedding and Mahalanobis distance, the bilinear
up-sampling and the Gaussian smoothing. Outputs: ``anomaly_map`` (1, 1, H, W) and ``score``
(1,), its maximum: the raw score anomalib's torch model reports before normalisation.

The embedding takes each layer's chosen channels before the coarser layers are up-sampled (anomalib
concatenates every channel of every layer at the finest resolution, then keeps 100 of them: for
resnet18 448 channels up-sampled and copied to keep 100). The channels so come grouped by layer,
a fixed permutation of anomalib's order; the mean and the inverse covariances are permuted alike
at export, and the squared distance, a quadratic form, is the same.

The smoothing is anomalib's own 33x33 kernel applied as two 1-D passes (it is an outer
product of two 1-D Gaussians): the same result with 2x33 instead of 33x33 multiply-adds per pixel.

The Mahalanobis distance, in a form that holds at f16 and reads half the memory:

- Cholesky: each position's inverse covariance is L L^T (L lower triangular), so the squared
  distance delta^T inv_cov delta is ||L^T delta||^2, a sum of squares: no cancellation between
  large terms of both signs (bf16 moved the Lite0 scores by 1.5% of the threshold the old way).
- Triangular: L^T is applied in blocks of BLOCK rows, each block only over the columns at and
  right of its diagonal, so about (C + BLOCK) / 2C of a full C x C matrix is stored and read per
  position (C = 100, BLOCK = 20: 60%), the head's memory traffic at every precision.
- Scaled by a power of two (``distance_scale_log2``, fixed at export from the folder's own scores,
  see ``choose_distance_scale``): the factors are multiplied by 2^k, so the squared distances
  come out multiplied by 4^k, far inside f16's range (a Lite0 score of 600 is a squared distance
  of 360,000; f16 stops at 65,504); the map is multiplied back by 2^-k after the smoothing. A
  power of two is exact in binary floating point: at f32 the outputs do not depend on k.
- Kept at f32 whatever the device runs the rest at (``precise``): the depthwise convolutions and
  the map from the square root on.
- Capped: the squared distance is clamped at ``cap`` before the square root, so that the
  distance and the map scaled back stay finite at f16 (a frame far beyond the threshold reads as
  far beyond it, never as inf or NaN, which would give no verdict at all).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import PadimCheckpoint
from .precise import layers_to_keep, mark_precise

MAP_OUTPUT, SCORE_OUTPUT = "anomaly_map", "score"
WEIGHTS = "backbone f32, Gaussian statistics f16 (mean, Cholesky factors of the inverse covariances)"  # inspectd.json runtime.weights
BLOCK = 20  # rows of L^T per MatMul: measured against 10, 25, 50 and 100 (inspectd.json head.block)
F16_MAX = 65504.0
EIGEN_FLOOR = 1e-9  # of each inverse covariance's largest eigenvalue: the smallest one kept (see triangular_blocks)
HEADROOM = 2.0  # the cap keeps the outputs at most half of f16's largest value


def choose_distance_scale(scores: np.ndarray, normal: np.ndarray | None) -> int:
    """k such that the highest normal score times 2^k lies in [1, 2): normal distances near 1, squared too.

    ``scores``: the exported graph's scores on the export's frames (any k: they do not depend on
    it at f32); ``normal``: which of them are good parts, when known. f16 keeps 11 bits for any
    magnitude between 2^-14 and 65,504: at k, the threshold's squared distance sits near 1 and a
    frame 100 times beyond it squares to about 10^4, inside the range; the normal positions far
    below the threshold, where f16 has fewer bits, matter least. If the highest score seen would
    square beyond 2^12, k goes down by up to 3 more (the threshold's distance then nearer 1/8).
    """
    usable = np.isfinite(scores) & (scores > 0)
    if not usable.any():
        return 0
    reference = usable & normal if normal is not None and (usable & normal).any() else usable
    k = -math.floor(math.log2(float(scores[reference].max())))
    highest = float(scores[usable].max()) * 2.0**k
    if highest > 64:
        k -= min(3, math.ceil(math.log2(highest / 64)))
    return k


def distance_cap(distance_scale_log2: int) -> float:
    """The largest squared (scaled) distance the graph passes on: f16-safe as it is and once scaled back by 2^-k."""
    limit = F16_MAX / HEADROOM
    return min(limit, (limit * 2.0**distance_scale_log2) ** 2)


def layer_channels(idx: list[int], widths: list[int]) -> tuple[list[list[int]], list[int]]:
    """anomalib's chosen channels (``idx``: into the layers' outputs concatenated, ``widths`` channels each) grouped by layer.

    Returns each layer's own channel numbers, in the order ``idx`` names them, and the permutation:
    channel k of the grouped embedding is channel ``permutation[k]`` of anomalib's.

    >>> layer_channels([5, 0, 2, 4], [3, 3])
    ([[0, 2], [2, 1]], [1, 2, 0, 3])
    """
    starts = np.cumsum([0, *widths]).tolist()
    per_layer, permutation = [], []
    for low, high in zip(starts[:-1], starts[1:]):
        positions = [position for position, channel in enumerate(idx) if low <= channel < high]
        per_layer.append([idx[position] - low for position in positions])
        permutation += positions
    return per_layer, permutation


def triangular_blocks(inv_covariance: torch.Tensor, distance_scale_log2: int, block: int = BLOCK) -> list[torch.Tensor]:
    """2^k L^T (L: the lower Cholesky factor of each position's inverse covariance) in blocks of ``block`` rows.

    Block i holds rows [i*block, (i+1)*block) and only columns from i*block on (left of them
    L^T is zero), transposed to (positions, C - i*block, rows) for ``delta[..., i*block:] @ block_i``.
    Computed in float64. The stored inverse covariances were inverted in float32 from nearly singular
    covariances (fewer training images than features, regularised by 0.01): in their directions of
    large variance their eigenvalues are rounding noise, some below zero, and Cholesky refuses them.
    Only the symmetric part counts in delta^T inv_cov delta; its eigenvalues are floored at
    EIGEN_FLOOR of the largest, which moves the distances by about that much of themselves.
    """
    symmetric = (inv_covariance.double() + inv_covariance.double().transpose(1, 2)) / 2
    values, vectors = torch.linalg.eigh(symmetric)
    values = values.clamp(min=values.amax(dim=-1, keepdim=True) * EIGEN_FLOOR)
    definite = (vectors * values.unsqueeze(1)) @ vectors.transpose(1, 2)
    factor = torch.linalg.cholesky((definite + definite.transpose(1, 2)) / 2)  # (positions, C, C), lower
    upper = factor.transpose(1, 2) * 2.0**distance_scale_log2
    channels = upper.shape[-1]
    return [upper[:, start : start + block, start:].transpose(1, 2).contiguous() for start in range(0, channels, block)]


class InspectdPadim(nn.Module):
    def __init__(self, checkpoint: PadimCheckpoint, distance_scale_log2: int | None = 0) -> None:
        """``distance_scale_log2`` None: unscaled and uncapped, only to measure the scores' range (``choose_distance_scale``)."""
        super().__init__()
        padim, pre = checkpoint.model, checkpoint.preprocess
        self.feature_extractor = padim.feature_extractor
        self.layers = list(padim.layers)
        self.output_size = pre.output_size()
        std = torch.tensor(pre.std, dtype=torch.float32)
        mean = torch.tensor(pre.mean, dtype=torch.float32)
        # x_rgb / 255 then Normalize == x_rgb * scale + offset
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(1, 3, 1, 1))
        self.register_buffer("offset", (-mean / std).view(1, 3, 1, 1))
        per_layer, permutation = layer_channels(padim.idx.tolist(), list(padim.feature_extractor.out_dims))
        self.chosen = [layer for layer, channels in zip(self.layers, per_layer) if channels]  # a layer with none chosen is skipped
        for layer, channels in zip(self.layers, per_layer):
            if channels:
                self.register_buffer(f"channels_{layer.replace('.', '_')}", torch.tensor(channels, dtype=torch.long))
        # The Gaussian statistics are most of the model (positions x C x C): stored in FP16 and
        # widened at run time. The backbone keeps FP32 weights: FP16 backbone weights moved
        # mobilenetv2 scores by 1.3% of the threshold, the statistics in FP16 by about 0.01%.
        permutation = torch.tensor(permutation, dtype=torch.long)
        self.register_buffer("mean", padim.gaussian.mean[permutation].half())  # (C, positions)
        inv_covariance = padim.gaussian.inv_covariance[:, permutation][:, :, permutation]
        blocks = triangular_blocks(inv_covariance, distance_scale_log2 or 0)
        self.block_starts = [index * BLOCK for index in range(len(blocks))]
        for index, weights in enumerate(blocks):
            self.register_buffer(f"factor_{index}", weights.half())  # (positions, C - start, BLOCK)
        self.cap = math.inf if distance_scale_log2 is None else distance_cap(distance_scale_log2)
        self.unscale = 2.0 ** -(distance_scale_log2 or 0)
        kernel = padim.anomaly_map_generator.blur.kernel[0, 0].double()
        self.register_buffer("kernel_rows", kernel.sum(dim=1).float().view(1, 1, -1, 1))
        self.register_buffer("kernel_cols", kernel.sum(dim=0).float().view(1, 1, 1, -1))
        self.pad = kernel.shape[-1] // 2

    def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = frame.permute(0, 3, 1, 2)[:, [2, 1, 0]]
        features = self.feature_extractor(rgb * self.scale + self.offset)
        finest = features[self.layers[0]].shape[-2:]
        parts = []
        for layer in self.chosen:
            part = torch.index_select(features[layer], 1, getattr(self, f"channels_{layer.replace('.', '_')}"))
            parts.append(part if part.shape[-2:] == finest else F.interpolate(part, size=finest, mode="nearest"))
        embedding = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        _, channels, height, width = embedding.shape
        delta = (embedding.reshape(channels, height * width) - self.mean.float()).transpose(0, 1).unsqueeze(1)  # (positions, 1, C)
        squared = None
        for index, start in enumerate(self.block_starts):
            rows = torch.matmul(delta[:, :, start:], getattr(self, f"factor_{index}").float())  # (positions, 1, BLOCK)
            part = (rows * rows).sum(dim=(1, 2))
            squared = part if squared is None else squared + part
        squared = squared.clamp(min=0) if math.isinf(self.cap) else squared.clamp(min=0, max=self.cap)
        distance = squared.sqrt().reshape(1, 1, height, width)
        upsampled = F.interpolate(distance, size=self.output_size, mode="bilinear", align_corners=False)
        padded = F.pad(upsampled, (self.pad, self.pad, self.pad, self.pad), mode="reflect")
        anomaly_map = F.conv2d(F.conv2d(padded, self.kernel_rows), self.kernel_cols) * self.unscale
        return anomaly_map, torch.amax(anomaly_map, dim=(1, 2, 3))


def export_ir(checkpoint: PadimCheckpoint, folder: Path, distance_scale_log2: int | None) -> None:
    """Write model.xml/model.bin (fixed input size; FP16 statistics, FP32 backbone) into ``folder``.

    ``distance_scale_log2``: k (see ``choose_distance_scale``), or None for a graph that only measures the range.
    """
    import openvino as ov
    from openvino.tools.ovc import convert_model  # not ov.convert_model: the station's runtime may have imported openvino without it

    height, width = checkpoint.preprocess.output_size()
    graph = InspectdPadim(checkpoint, distance_scale_log2).eval()
    example = torch.zeros(1, height, width, 3)
    with torch.no_grad():
        converted = convert_model(graph, example_input=example, input=[1, height, width, 3])
    converted.outputs[0].get_tensor().set_names({MAP_OUTPUT})
    converted.outputs[1].get_tensor().set_names({SCORE_OUTPUT})
    converted.inputs[0].get_tensor().set_names({"frame"})
    ov.save_model(converted, str(folder / "model.xml"), compress_to_fp16=False)
    if distance_scale_log2 is not None:
        mark_precise(folder / "model.xml", layers_to_keep(converted))
