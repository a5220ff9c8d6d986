"""runtime.cost: the multiply-adds counted on a model folder's IR, and the Pi 5 projection built on them."""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from inspectd.daemon.runtime.cost import PI5_GFLOPS, PI5_MB_PER_S, GraphCost, graph_cost

precise = pytest.importorskip("inspectd.export.precise", reason="the export package marks layers precise")


def _folder(tmp_path):
    """A graph of one of each counted layer, the first convolution marked precise as export marks it."""
    rng = np.random.default_rng(0)
    frame = ops.parameter([1, 3, 16, 16], np.float32, name="frame")
    conv = ops.convolution(frame, ops.constant(rng.random((8, 3, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1], [1, 1], name="conv")
    grouped = ops.group_convolution(conv, ops.constant(rng.random((8, 1, 1, 3, 3), np.float32)), [2, 2], [1, 1], [1, 1], [1, 1],
                                    name="depthwise")  # 8 groups of one channel, stride 2: 8x8 out
    rows = ops.reshape(grouped, ops.constant(np.array([8, 1, 64], np.int64)), special_zero=False)
    product = ops.matmul(rows, ops.constant(rng.random((8, 64, 5), np.float32)), False, False, name="head")
    ov.save_model(ov.Model([product], [frame]), tmp_path / "model.xml", compress_to_fp16=False)
    assert precise.mark_precise(tmp_path / "model.xml", {"conv"}) == 1
    return tmp_path


def test_the_multiply_adds_are_counted_layer_by_layer(tmp_path):
    cost = graph_cost(_folder(tmp_path))
    conv = 8 * 16 * 16 * (3 * 3 * 3)  # outputs x (in channels x kernel)
    depthwise = 8 * 8 * 8 * (1 * 3 * 3)  # a group sees its one channel
    head = 8 * 1 * 5 * 64  # outputs x the shared dimension
    assert cost.gmac * 1e9 == pytest.approx(conv + depthwise + head)
    assert cost.gmac_kept_f32 * 1e9 == pytest.approx(conv)
    assert cost.weights_mb * 1e6 == (tmp_path / "model.bin").stat().st_size


def test_the_projection_runs_only_what_is_not_kept_at_f16():
    cost = GraphCost(gmac=2.0, gmac_kept_f32=0.5, weights_mb=85.0)
    memory = 85.0 / PI5_MB_PER_S
    assert cost.pi5_ms("f32") == pytest.approx((2 * 2.0 / PI5_GFLOPS["f32"] + memory) * 1000)
    assert cost.pi5_ms("f16") == pytest.approx((2 * 0.5 / PI5_GFLOPS["f32"] + 2 * 1.5 / PI5_GFLOPS["f16"] + memory) * 1000)
    everything_kept = GraphCost(gmac=2.0, gmac_kept_f32=2.0, weights_mb=85.0)
    assert everything_kept.pi5_ms("f16") == pytest.approx(everything_kept.pi5_ms("f32"))


@pytest.mark.parametrize("option, value, said", [("--frames", "0", "0 frames: give at least 1"), ("--width", "0", "0 pixels: give at least 1"),
                                                 ("--height", "-5", "-5 pixels: give at least 1"),
                                                 ("--frames", "ten", "'ten' is not a whole number of frames")])
def test_bench_refuses_counts_below_one_in_one_line(option, value, said):
    from conftest import DEMO_MODEL, cli

    result = cli("bench", DEMO_MODEL, option, value)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"argument {option}: {said}" in result.stderr.strip().splitlines()[-1], result.stderr
