"""inspectd's numpy metrics against torchmetrics and anomalib on the same scores (to 1e-6)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import needs_export
from inspectd.daemon.evaluation import metrics
from inspectd.daemon.evaluation.metrics import Rate, aupro, auroc, confusion, f1_score

pytestmark = needs_export


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(2, 300), levels=st.sampled_from([3, 20, 10**6]))
def test_auroc_matches_torchmetrics(seed, size, levels):
    import torch
    from torchmetrics.classification import BinaryAUROC

    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, levels, size) / levels).astype(np.float32)  # in [0, 1]: torchmetrics takes others as logits
    labels = rng.random(size) < 0.4
    expected = BinaryAUROC()(torch.tensor(scores), torch.tensor(labels).int()).item() if 0 < labels.sum() < size else None
    ours = auroc(scores, labels)
    assert (ours is None) == (expected is None)
    if ours is not None:
        assert ours == pytest.approx(expected, abs=1e-6)


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), images=st.integers(1, 5), ties=st.booleans())
def test_aupro_and_pixel_auroc_match_anomalib(seed, images, ties):
    import torch
    from anomalib.metrics.aupro import _AUPRO
    from torchmetrics.classification import BinaryAUROC

    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for _ in range(images):
        mask = np.zeros((48, 64), np.uint8)
        for _ in range(rng.integers(0, 4)):
            y, x = rng.integers(0, 40), rng.integers(0, 56)
            mask[y : y + rng.integers(1, 9), x : x + rng.integers(1, 9)] = 1
        heat = rng.random((48, 64)).astype(np.float32) + 0.4 * mask
        maps.append(np.round(heat, 1).astype(np.float32) if ties else heat)
        masks.append(mask)
    reference = _AUPRO(fpr_limit=0.3)
    reference.update(torch.tensor(np.stack(maps)), torch.tensor(np.stack(masks)).float())
    ours = aupro(maps, masks)
    if not np.stack(masks).any():
        assert ours is None
        return
    assert ours == pytest.approx(reference.compute().item(), abs=1e-6)
    pixels = BinaryAUROC()(torch.tensor(np.stack(maps) / 2).flatten(), torch.tensor(np.stack(masks)).flatten().int()).item()
    assert auroc(np.stack(maps) / 2, np.stack(masks) > 0) == pytest.approx(pixels, abs=1e-6)


def test_rates_and_counts():
    rate = Rate(1, 100)
    low, high = rate.interval
    assert rate.value == 0.01 and 0.001 < low < 0.01 < high < 0.06  # Wilson: 0.18%-5.45%
    assert Rate(0, 20).interval[0] == 0.0 and 0.1 < Rate(0, 20).interval[1] < 0.2
    counts = confusion(np.array([1.0, 2.0, 3.0, 4.0]) > 2.0, np.array([False, True, False, True]))
    assert counts == {"true_reject": 1, "false_reject": 1, "false_accept": 1, "true_pass": 1}
    assert f1_score(counts) == 0.5


def test_docstring_examples_run():
    assert doctest.testmod(metrics).failed == 0
