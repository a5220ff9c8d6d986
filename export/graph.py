"""The exported graph: anomalib's PaDiM with the pre-processing the daemon cannot skip folded in.

Input: one frame already resized (and centre-cropped) by the daemon, (1, H, W, 3) float32,
BGR, 0..255: what OpenCV and the cameras give. Inside: BGR->RGB and the training
normalisation, the backbone, PaDiM's embedding and Mahalanobis distance, the bilinear
up-sampling and the Gaussian smoothing. Outputs: ``anomaly_map`` (1, 1, H, W) and ``score``
(1,), its maximum: the raw score anomalib's torch model reports before normalisation.

The smoothing is anomalib's own 33x33 kernel applied as two 1-D passes (it is an outer
product of two 1-D Gaussians): the same result with 2x33 instead of 33x33 multiply-adds per pixel.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import PadimCheckpoint

MAP_OUTPUT, SCORE_OUTPUT = "anomaly_map", "score"
WEIGHTS = "backbone f32, Gaussian statistics f16"  # how InspectdPadim stores them: inspectd.json runtime.weights


class InspectdPadim(nn.Module):
    def __init__(self, checkpoint: PadimCheckpoint) -> None:
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
        self.register_buffer("idx", padim.idx.clone())
        # The Gaussian statistics are most of the model (positions x C x C): stored in FP16 and
        # widened at run time. The backbone keeps FP32 weights: FP16 backbone weights moved
        # mobilenetv2 scores by 1.3% of the threshold, the statistics in FP16 by about 0.01%.
        self.register_buffer("mean", padim.gaussian.mean.half())  # (C, positions)
        self.register_buffer("inv_covariance", padim.gaussian.inv_covariance.half())  # (positions, C, C)
        kernel = padim.anomaly_map_generator.blur.kernel[0, 0].double()
        self.register_buffer("kernel_rows", kernel.sum(dim=1).float().view(1, 1, -1, 1))
        self.register_buffer("kernel_cols", kernel.sum(dim=0).float().view(1, 1, 1, -1))
        self.pad = kernel.shape[-1] // 2

    def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = frame.permute(0, 3, 1, 2)[:, [2, 1, 0]]
        features = self.feature_extractor(rgb * self.scale + self.offset)
        embedding = features[self.layers[0]]
        for layer in self.layers[1:]:
            coarse = F.interpolate(features[layer], size=embedding.shape[-2:], mode="nearest")
            embedding = torch.cat((embedding, coarse), 1)
        embedding = torch.index_select(embedding, 1, self.idx)
        _, channels, height, width = embedding.shape
        delta = (embedding.reshape(channels, height * width) - self.mean.float()).transpose(0, 1).unsqueeze(1)
        distance = (torch.matmul(delta, self.inv_covariance.float()) * delta).sum(dim=(1, 2))
        distance = distance.clamp(min=0).sqrt().reshape(1, 1, height, width)
        upsampled = F.interpolate(distance, size=self.output_size, mode="bilinear", align_corners=False)
        padded = F.pad(upsampled, (self.pad, self.pad, self.pad, self.pad), mode="reflect")
        anomaly_map = F.conv2d(F.conv2d(padded, self.kernel_rows), self.kernel_cols)
        return anomaly_map, torch.amax(anomaly_map, dim=(1, 2, 3))


def export_ir(checkpoint: PadimCheckpoint, folder: Path) -> None:
    """Write model.xml/model.bin (fixed input size; FP16 statistics, FP32 backbone) into ``folder``."""
    import openvino as ov

    height, width = checkpoint.preprocess.output_size()
    graph = InspectdPadim(checkpoint).eval()
    example = torch.zeros(1, height, width, 3)
    with torch.no_grad():
        converted = ov.convert_model(graph, example_input=example, input=[1, height, width, 3])
    converted.outputs[0].get_tensor().set_names({MAP_OUTPUT})
    converted.outputs[1].get_tensor().set_names({SCORE_OUTPUT})
    converted.inputs[0].get_tensor().set_names({"frame"})
    ov.save_model(converted, str(folder / "model.xml"), compress_to_fp16=False)
