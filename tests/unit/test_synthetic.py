"""The synthetic station dataset: layout, determinism, and stains that are where the masks say."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspectd.daemon.demo.scene import generate_station_dataset

SIZES = ("small", "medium", "large")
COUNTS = {"n_train": 3, "n_test_good": 3, "n_test_per_size": 4}
# Green excess G - max(R, B): camera noise on the white mug and the blue-grey table stays
# below NOISE; even the palest dye is above STAIN.
NOISE, STAIN = 25, 15


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_station_dataset(tmp_path_factory.mktemp("station"), **COUNTS, seed=7)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def green_excess(image: np.ndarray) -> np.ndarray:
    b, g, r = (image[..., i].astype(np.int16) for i in range(3))
    return g - np.maximum(r, b)


def stained(root: Path, size: str) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for path in sorted((root / "test" / f"stain_{size}").glob("*.png")):
        mask = cv2.imread(str(root / "ground_truth" / f"stain_{size}" / f"{path.stem}_mask.png"),
                          cv2.IMREAD_UNCHANGED)
        pairs.append((cv2.imread(str(path), cv2.IMREAD_UNCHANGED), mask))
    return pairs


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=pixels) > 0


def test_layout_and_counts(dataset: Path) -> None:
    names = lambda n: [f"{i:03d}.png" for i in range(n)]  # noqa: E731
    assert sorted(p.name for p in (dataset / "train" / "good").iterdir()) == names(3)
    assert sorted(p.name for p in (dataset / "test" / "good").iterdir()) == names(3)
    assert sorted(p.name for p in (dataset / "test").iterdir()) == ["good", "stain_large", "stain_medium", "stain_small"]
    assert sorted(p.name for p in (dataset / "ground_truth").iterdir()) == ["stain_large", "stain_medium", "stain_small"]
    for size in SIZES:
        assert sorted(p.name for p in (dataset / "test" / f"stain_{size}").iterdir()) == names(4)
        assert sorted(p.name for p in (dataset / "ground_truth" / f"stain_{size}").iterdir()) == [
            f"{i:03d}_mask.png" for i in range(4)]
    for path in dataset.glob("t*/*/*.png"):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image.shape == (360, 480, 3) and image.dtype == np.uint8, path
    for path in dataset.glob("ground_truth/*/*.png"):
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (360, 480) and mask.dtype == np.uint8, path
        assert set(np.unique(mask)) <= {0, 255}, path


def test_deterministic_and_streams_independent(dataset: Path, tmp_path: Path) -> None:
    again = files(generate_station_dataset(tmp_path / "again", **COUNTS, seed=7))
    assert again == files(dataset)
    # Fewer training images: the test split does not move.
    fewer = files(generate_station_dataset(tmp_path / "fewer", n_train=1, n_test_good=3,
                                           n_test_per_size=4, seed=7))
    assert {k: v for k, v in fewer.items() if not k.startswith("train/")} == {
        k: v for k, v in again.items() if not k.startswith("train/")}
    other_seed = files(generate_station_dataset(tmp_path / "other", n_train=1, n_test_good=0,
                                                n_test_per_size=0, seed=8))
    assert other_seed["train/good/000.png"] != again["train/good/000.png"]


def test_masks_non_empty_and_sizes_ordered(dataset: Path) -> None:
    mean_area = {}
    for size in SIZES:
        areas = [int(np.count_nonzero(mask)) for _, mask in stained(dataset, size)]
        assert min(areas) >= 40, (size, areas)
        mean_area[size] = np.mean(areas)
    assert mean_area["small"] * 2 < mean_area["medium"] < mean_area["large"] / 2, mean_area


def test_stains_are_green_exactly_inside_the_mask(dataset: Path) -> None:
    for size in SIZES:
        for image, mask in stained(dataset, size):
            inside = mask > 0
            g_minus_r = image[..., 1].astype(np.int16) - image[..., 2].astype(np.int16)
            excess = green_excess(image)
            # Clearly greener than the mug surface around it (a band 4..10 px away).
            around = dilate(inside, 10) & ~dilate(inside, 4)
            assert g_minus_r[inside].mean() > g_minus_r[around].mean() + 30, size
            assert np.mean(excess[inside] > STAIN) > 0.95, size
            # Nothing green just outside the mask, nor anywhere else.
            assert np.count_nonzero(excess[~inside] > NOISE) == 0, size


def test_good_images_have_no_green(dataset: Path) -> None:
    for path in sorted(dataset.glob("t*/good/*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert np.count_nonzero(green_excess(image) > NOISE) == 0, path
        # The white mug is in the picture (a large bright region) and is not greenish on average.
        bright = image.min(axis=2) > 150
        assert np.count_nonzero(bright) > 5000, path
        assert green_excess(image)[bright].mean() < 3, path
