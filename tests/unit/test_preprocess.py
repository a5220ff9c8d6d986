"""The resize's own properties (no torch): constants stay constant, blocks equal a whole copy, memory stays small.
The comparisons with torchvision (it imports torch: seconds per case) are in tests/integration/test_preprocess_torchvision.py."""

from __future__ import annotations

import numpy as np
import pytest

from inspectd.daemon.runtime.preprocess import resize_antialias

SIZES = [((768, 576), (256, 256)), ((667, 1000), (256, 256)), ((1334, 2000), (256, 256)),
         ((100, 90), (256, 256)), ((256, 256), (256, 256)), ((480, 640), (128, 192)), ((31, 1000), (256, 7))]


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
