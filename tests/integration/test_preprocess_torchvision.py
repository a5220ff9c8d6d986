"""inspectd's resize must be torchvision's Resize(antialias=True), the one anomalib trains with (torch: integration tier)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import needs_export
from inspectd.daemon.schema import Preprocessing
from inspectd.daemon.runtime.preprocess import model_region, prepare, resize_antialias

SIZES = [((768, 576), (256, 256)), ((667, 1000), (256, 256)), ((1334, 2000), (256, 256)),
         ((100, 90), (256, 256)), ((256, 256), (256, 256)), ((480, 640), (128, 192)), ((31, 1000), (256, 7))]


@needs_export
@pytest.mark.parametrize("source,target", SIZES)
def test_resize_matches_torchvision_antialias(source, target):
    import torch
    from torchvision.transforms.v2 import Resize

    image = np.random.default_rng(0).integers(0, 256, (*source, 3), dtype=np.uint8)
    reference = Resize(target, antialias=True)(torch.from_numpy(image).permute(2, 0, 1).float()).permute(1, 2, 0).numpy()
    ours = resize_antialias(image, *target)
    assert ours.shape == (*target, 3) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 0.01  # of 255


@needs_export
def test_resize_differs_from_non_antialiased():
    """The point of it: anomalib's exported graph resizes without antialiasing and gets other pixels."""
    import torch
    from torchvision.transforms.v2 import Resize

    image = np.random.default_rng(1).integers(0, 256, (1334, 2000, 3), dtype=np.uint8)
    aliased = Resize((256, 256), antialias=False)(torch.from_numpy(image).permute(2, 0, 1).float()).permute(1, 2, 0).numpy()
    assert np.abs(resize_antialias(image, 256, 256) - aliased).mean() > 10


@needs_export
@pytest.mark.parametrize("resize,crop", [((256, 256), (224, 224)), (256, (224, 224)), (200, (200, 200))])
def test_center_crop_and_shorter_edge_match_torchvision(resize, crop):
    import torch
    from torchvision.transforms.v2 import CenterCrop, Compose, Resize

    image = np.random.default_rng(2).integers(0, 256, (667, 1000, 3), dtype=np.uint8)
    spec = Preprocessing(crop[0], crop[1], resize, crop, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    rgb = torch.from_numpy(image).permute(2, 0, 1).float()
    reference = Compose([Resize(resize, antialias=True), CenterCrop(crop)])(rgb).permute(1, 2, 0).numpy()
    ours = prepare(image, spec)[0]
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 0.01
    top, left, bottom, right = model_region(667, 1000, spec)
    assert 0 <= top < bottom <= 667 and 0 <= left < right <= 1000
