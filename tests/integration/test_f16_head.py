"""The f16-safe head (export/graph.py): the same distances as PaDiM's, in a range f16 holds.

The arm64 tier (tests/system/test_package.py) runs the folders at f16 in the emulated Pi 5; here the
pieces are checked on x86: the triangular Cholesky blocks against the full quadratic form, the scale
chosen from a folder's scores, and the shipped demo folder at f16 where this CPU runs f16 natively
(a Xeon with AVX-512 FP16 does; the old head gave inf there, as on the Pi).
"""

from __future__ import annotations

import math

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


def test_the_scale_puts_the_highest_normal_score_near_one():
    from inspectd.export.graph import F16_MAX, choose_distance_scale, distance_cap

    scores = np.array([410.0, 655.0, 590.0, 2400.0])  # Lite0-like: normal scores in the hundreds, one far defect
    normal = np.array([True, True, True, False])
    k = choose_distance_scale(scores, normal)
    assert 1 <= 655.0 * 2.0**k < 2
    assert (2400.0 * 2.0**k) ** 2 < F16_MAX / 100
    assert distance_cap(k) <= F16_MAX / 2 and math.isfinite(math.sqrt(distance_cap(k)) * 2.0**-k)
    assert choose_distance_scale(np.array([np.inf, np.nan]), None) == 0


def test_the_demo_folder_runs_at_f16_where_this_cpu_does(demo_model):
    """Native f16 here: every self-test frame finite, same verdict, score within 1% of the threshold (the old head gave inf)."""
    import openvino as ov

    from inspectd.daemon.runtime.selftest import load_cases
    from inspectd.daemon.schema import read_model_folder

    core = ov.Core()
    if "FP16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU does not run f16 natively: the arm64 tier checks it in the emulated Pi 5")
    folder = read_model_folder(demo_model)
    assert folder.metadata.head is not None, "the shipped demo folder was exported with the f16-safe head"
    compiled = core.compile_model(core.read_model(str(folder.xml_path)), "CPU", {"INFERENCE_PRECISION_HINT": "f16"})
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f16"
    cases, request = load_cases(folder), compiled.create_infer_request()
    scores = np.array([float(request.infer({0: frame[None]})[compiled.output("score")].ravel()[0]) for frame in cases.inputs])
    assert np.isfinite(scores).all(), scores
    assert ((scores > cases.threshold) == (cases.reference_scores > cases.threshold)).all()
    assert np.abs(scores - cases.reference_scores).max() <= 0.01 * cases.threshold
