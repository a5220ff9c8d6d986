"""The f16-safe head (export/graph.py): the same distances as PaDiM's, in a range f16 holds.

The arm64 tier (tests/system/test_package.py) runs the folders at f16 in the emulated Pi 5; here the
pieces are checked here: the triangular Cholesky blocks against the full quadratic form and the scale
chosen from a folder's scores (tests/integration/test_export.py runs a Lite0 folder at f16 where this
CPU runs f16 natively).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_export

pytestmark = needs_export


def test_triangular_blocks_give_the_full_mahalanobis_distance():
    import torch

    from inspectd.export.graph import triangular_blocks

    generator = torch.Generator().manual_seed(0)
    positions, channels, block = 3, 45, 20  # 45: the last block is short
    factors = torch.randn(positions, channels, channels, generator=generator, dtype=torch.float64)
    inv_covariance = factors @ factors.transpose(1, 2) / channels + 0.01 * torch.eye(channels, dtype=torch.float64)
    delta = torch.randn(positions, 1, channels, generator=generator, dtype=torch.float64)
    expected = (delta @ inv_covariance @ delta.transpose(1, 2)).reshape(positions)
    for k in (0, -6, 3):
        blocks = triangular_blocks(inv_covariance.float(), k, block)
        assert [b.shape[1] for b in blocks] == [45, 25, 5]
        squared = sum(((delta[:, :, i * block:] @ b.double()) ** 2).sum(dim=(1, 2)) for i, b in enumerate(blocks))
        np.testing.assert_allclose(squared.numpy(), expected.numpy() * 4.0**k, rtol=1e-5)


def test_channels_chosen_per_layer_give_anomalibs_distance():
    """The grouped embedding (each layer's chosen channels, then up-sampled) is anomalib's, permuted; the statistics
    permuted alike give the same squared distance."""
    import torch
    from torch.nn import functional as F

    from inspectd.export.graph import layer_channels

    generator = torch.Generator().manual_seed(1)
    widths, sizes = [4, 6, 8], [8, 4, 2]
    features = [torch.randn(1, w, s, s, generator=generator) for w, s in zip(widths, sizes)]
    idx = torch.randperm(sum(widths), generator=generator)[:7].tolist()
    anomalib = torch.cat([features[0]] + [F.interpolate(f, size=(8, 8), mode="nearest") for f in features[1:]], 1)[:, idx]
    per_layer, permutation = layer_channels(idx, widths)
    grouped = torch.cat([F.interpolate(f[:, channels], size=(8, 8), mode="nearest") for f, channels in zip(features, per_layer) if channels], 1)
    assert torch.equal(grouped, anomalib[:, permutation])
    factors = torch.randn(7, 7, generator=generator, dtype=torch.float64)
    inv_covariance = factors @ factors.T
    delta = anomalib.reshape(7, -1).double()
    expected = torch.einsum("cp,cd,dp->p", delta, inv_covariance, delta)
    moved = inv_covariance[permutation][:, permutation]
    np.testing.assert_allclose(torch.einsum("cp,cd,dp->p", delta[permutation], moved, delta[permutation]).numpy(), expected.numpy(), rtol=1e-12)


def test_the_scale_puts_the_highest_normal_score_near_one():
    from inspectd.export.graph import F16_MAX, choose_distance_scale, distance_cap

    scores = np.array([410.0, 655.0, 590.0, 2400.0])  # Lite0-like: normal scores in the hundreds, one far defect
    normal = np.array([True, True, True, False])
    k = choose_distance_scale(scores, normal)
    assert 1 <= 655.0 * 2.0**k < 2
    assert (2400.0 * 2.0**k) ** 2 < F16_MAX / 100
    assert distance_cap(k) <= F16_MAX / 2 and math.isfinite(math.sqrt(distance_cap(k)) * 2.0**-k)
    assert choose_distance_scale(np.array([np.inf, np.nan]), None) == 0



@pytest.fixture(scope="module")
def exported(cookie_checkpoint, tmp_path_factory) -> Path:
    """model.xml/.bin of the cookie checkpoint (resnet18/256) as export writes them, before any stage is chosen."""
    from inspectd.export.checkpoint import load_checkpoint
    from inspectd.export.graph import export_ir

    folder = tmp_path_factory.mktemp("graph")
    export_ir(load_checkpoint(cookie_checkpoint), folder, 0)
    return folder


def test_the_backbone_stages_and_the_layers_kept_at_f32(exported):
    """resnet18's stages in the order they run; what every folder keeps at f32, and the stages kept on top of it."""
    import openvino as ov

    from inspectd.export.precise import CONVOLUTIONS, backbone_stages, layers_to_keep

    graph = ov.Core().read_model(str(exported / "model.xml"))
    ops = graph.get_ordered_ops()
    stages = backbone_stages(graph)
    assert [stage.name for stage in stages][:3] == ["stem", "layer1.0", "layer1.1"] and stages[-1].name == "layer3.1"
    assert all(stage.multiply_adds > 0 for stage in stages)
    last_root = max(i for i, op in enumerate(ops) if op.get_type_name() == "Sqrt")
    backbone = {op.get_friendly_name() for op in ops[:last_root] if op.get_type_name() in CONVOLUTIONS}
    assert backbone == {name for stage in stages for name in stage.layers if name in backbone}  # every convolution in a stage
    always = layers_to_keep(graph)
    first = next(op for op in ops if op.get_type_name() in CONVOLUTIONS)
    assert first.get_friendly_name() in always and stages[0].layers <= always
    assert {op.get_friendly_name() for op in graph.get_results()} <= always  # the outputs leave at f32
    assert {op.get_friendly_name() for op in ops if op.get_type_name() == "GroupConvolution"} <= always
    kept = [layers_to_keep(graph, n) for n in range(len(stages))]
    assert all(kept[n] < kept[n + 1] for n in range(len(stages) - 1))
    assert not stages[1].layers & always and stages[1].layers <= kept[1]
    assert {op.get_friendly_name() for op in ops if op.get_type_name() in CONVOLUTIONS} <= kept[-1]


def test_the_outputs_leave_at_f32_where_the_graph_runs_at_f16(exported):
    """OpenVINO rounded both outputs to f16 on their way out (a score of 736 came out a multiple of 0.5): not any more."""
    import openvino as ov

    core = ov.Core()
    if "FP16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU does not run f16: the outputs are f32 anyway")
    compiled = core.compile_model(core.read_model(str(exported / "model.xml")), "CPU", {"INFERENCE_PRECISION_HINT": "f16"})
    frame = np.random.default_rng(0).uniform(0, 255, compiled.input(0).get_shape()).astype(np.float32)
    outputs = compiled.create_infer_request().infer({0: frame})
    score, anomaly_map = (np.asarray(outputs[compiled.output(name)]).ravel() for name in ("score", "anomaly_map"))
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f16"
    assert score[0] != np.float16(score[0])
    assert np.mean(anomaly_map != anomaly_map.astype(np.float16)) > 0.9
