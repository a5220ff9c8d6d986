"""inspectd's resize must be torchvision's Resize(antialias=True), the one anomalib trains with."""

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


def test_constant_image_stays_constant():
    """Weights sum to one at every output pixel, also at the borders (needs no torch)."""
    image = np.full((333, 517, 3), 77, dtype=np.uint8)
    for target in ((256, 256), (64, 700), (500, 100)):
        assert np.allclose(resize_antialias(image, *target), 77.0, atol=1e-3)


def test_the_resize_never_copies_the_whole_frame_as_float32():
    """A 40-megapixel frame as float32 is 480 MB; each block converts only the rows it reads.
    numpy reports its buffers to tracemalloc: the peak is what the resize allocated."""
    import tracemalloc

    image = np.random.default_rng(3).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)  # 18 MB; as float32, 72 MB
    tracemalloc.start()
    try:
        resize_antialias(image, 256, 256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    whole_copy = image.size * 4  # the frame as float32
    assert peak < whole_copy / 2, f"{peak / 2**20:.1f} MiB allocated; the frame as float32 is {whole_copy / 2**20:.1f} MiB"


@pytest.mark.parametrize("source,target", SIZES)
def test_block_conversion_gives_the_values_of_a_whole_float32_copy(source, target):
    image = np.random.default_rng(4).integers(0, 256, (*source, 3), dtype=np.uint8)
    assert np.array_equal(resize_antialias(image, *target), resize_antialias(image.astype(np.float32), *target))
