"""inspectd infer: one line (or JSON object) per image, heatmaps, and one clear line per bad image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import problem_lines, run_cli
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.demo.scene import generate_station_dataset


@pytest.fixture(scope="module")
def station(tmp_path_factory) -> Path:
    return generate_station_dataset(tmp_path_factory.mktemp("station"), n_train=0, n_test_good=6, n_test_per_size=4)


def test_json_lines_and_heatmaps(demo_model, station, tmp_path):
    images = sorted((station / "test").glob("*/*.png"))
    result = run_cli("infer", demo_model, *images, "--json", "--heatmap-dir", tmp_path / "heat")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in images]
    for record, path in zip(records, images):
        assert set(record) >= {"image", "score", "threshold", "anomalous", "latency_ms"}
        assert record["anomalous"] == (record["score"] > record["threshold"])
        heat = cv2.imread(record["heatmap"])
        frame = cv2.imread(str(path))
        assert heat.shape == (frame.shape[0], 2 * frame.shape[1], 3)
        assert np.array_equal(heat[:, : frame.shape[1]], frame)  # the original, untouched, on the left
    good = [r for r, p in zip(records, images) if p.parent.name == "good"]
    large = [r for r, p in zip(records, images) if p.parent.name == "stain_large"]
    assert not any(r["anomalous"] for r in good)
    assert all(r["anomalous"] for r in large)


def test_plain_lines(demo_model, station):
    images = sorted((station / "test" / "good").glob("*.png"))[:2]
    result = run_cli("infer", demo_model, *images)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.split()[0] in ("PASS", "REJECT") and line.endswith(str(p)) for line, p in zip(lines, images))


def test_anomaly_map_at_frame_resolution_peaks_on_the_stain(demo_model, station):
    model = Model.load(demo_model)
    image = sorted((station / "test" / "stain_large").glob("*.png"))[0]
    mask = cv2.imread(str(station / "ground_truth" / "stain_large" / f"{image.stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
    frame = cv2.imread(str(image))
    heat = model.infer(frame).anomaly_map()
    assert heat.shape == frame.shape[:2]
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    ys, xs = np.nonzero(mask)
    assert min(ys) - 20 <= peak[0] <= max(ys) + 20 and min(xs) - 20 <= peak[1] <= max(xs) + 20


def bad_images(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    paths = {name: folder / f"{name}.png" for name in ("grayscale", "sixteen_bit", "corrupt")}
    cv2.imwrite(str(paths["grayscale"]), np.full((64, 64), 100, dtype=np.uint8))
    cv2.imwrite(str(paths["sixteen_bit"]), np.full((64, 64, 3), 30000, dtype=np.uint16))
    paths["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    paths["missing"] = folder / "missing.png"
    paths["empty"] = folder / "empty.jpg"
    paths["empty"].write_bytes(b"")
    return paths


@pytest.mark.parametrize("kind,expected", [("grayscale", "grayscale"), ("sixteen_bit", "16-bit"), ("corrupt", "not a readable image"),
                                           ("missing", "cannot be read"), ("empty", "not a readable image")])
def test_bad_image_one_line_and_others_still_scored(demo_model, station, tmp_path, kind, expected):
    bad = bad_images(tmp_path / "bad")[kind]
    good, after = sorted((station / "test" / "good").glob("*.png"))[:2]
    result = run_cli("infer", demo_model, good, bad, after, "--json")  # read ahead: the bad one's record keeps its place
    assert result.returncode == 1
    errors = problem_lines(result.stderr)
    assert len(errors) == 1 and str(bad) in errors[0] and expected in errors[0], result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["image"] == str(good) and "score" in records[0]  # no lost verdict for the good image
    assert records[1] == {"image": str(bad), "error": errors[0].removeprefix("inspectd: ")}
    assert records[2]["image"] == str(after) and "score" in records[2]


def test_folders_are_expanded_to_their_images(demo_model, station):
    result = run_cli("infer", demo_model, station / "test", "--json")
    assert result.returncode == 0, result.stderr
    images = [json.loads(line)["image"] for line in result.stdout.splitlines()]
    assert images == sorted(str(p) for p in (station / "test").rglob("*.png")) and len(images) == 18
