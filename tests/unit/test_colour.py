"""Colour or monochrome (unit tier): the one rule (runtime.colour), gray image files, the folder's input.color,
and `inspectd infer` with the demo model and a copy of it marked gray (no training: tests/integration/test_gray.py trains)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import DEMO_MODEL, cli
from inspectd.daemon.errors import ModelFolderError, SourceError
from inspectd.daemon.runtime.colour import MixedColours, conform, dataset_color, files_color, frame_color
from inspectd.daemon.runtime.images import read_image
from inspectd.daemon.runtime.preprocess import prepare, resize_antialias
from inspectd.daemon.schema import ModelMetadata, Preprocessing, read_model_folder
from inspectd.daemon.station.outputs.png import encode_png


def picture(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth colour picture (BGR): a real colour frame, its channels all different."""
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)


def gray_of(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def test_a_gray_model_takes_one_channel_or_three_equal_and_refuses_colour():
    colour = picture()
    gray = gray_of(colour)
    equal = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    for frame in (gray, gray[:, :, None], equal):
        taken = conform(frame, "gray", "f.png")
        assert taken.shape == (*gray.shape, 1) and np.array_equal(taken[:, :, 0], gray)
    with pytest.raises(SourceError) as refused:
        conform(colour, "gray", "camera#3")
    line = str(refused.value)
    assert "\n" not in line and line.startswith("camera#3: is a colour frame but the model folder was trained on grayscale images")
    assert "monochrome output" in line


def test_a_colour_model_refuses_gray_frames_and_takes_colour_and_black_ones():
    colour = picture()
    gray = gray_of(colour)
    assert conform(colour, "rgb", "f") is colour
    black = np.zeros((32, 32, 3), np.uint8)  # lens cap: no colour to judge, the same input for either model
    assert conform(black, "rgb", "f") is black and conform(black, "gray", "f").shape == (32, 32, 1)
    for frame, what in ((gray, "is a grayscale frame but"), (gray[:, :, None], "is a grayscale frame but"),
                        (cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), "is a grayscale frame (its three channels are equal)")):
        with pytest.raises(SourceError) as refused:
            conform(frame, "rgb", "/data/part.png")
        line = str(refused.value)
        assert "\n" not in line and line.startswith(f"/data/part.png: {what}") and "trained on colour images" in line
        assert "retrain with the grayscale images" in line and "colour output" in line


def test_a_colour_frame_differing_in_one_pixel_only_is_colour():
    frame = cv2.cvtColor(gray_of(picture(600, 800)), cv2.COLOR_GRAY2BGR)
    frame[599, 799, 2] ^= 1  # the last pixel of the last block
    assert frame_color(frame) == "rgb"
    with pytest.raises(SourceError, match="is a colour frame"):
        conform(frame, "gray", "f")


def test_a_gray_frame_gives_the_graph_what_three_equal_channels_give():
    gray = gray_of(picture(333, 517))
    for resize, crop in (((128, 128), None), (150, (128, 128))):
        spec = Preprocessing(128, 128, resize, crop, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "gray")
        from_gray = prepare(gray, spec)
        from_equal = prepare(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), spec)
        assert from_gray.shape == (1, 128, 128, 3) and from_gray.flags.c_contiguous
        assert np.array_equal(from_gray, from_equal)
    # What anomalib feeds: the channel three times, resized as three channels.
    three = resize_antialias(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), 128, 128)
    np.testing.assert_allclose(prepare(gray, Preprocessing(128, 128, (128, 128), None, (0.0,) * 3, (1.0,) * 3, "gray"))[0], three, atol=1e-4)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tiff"])
def test_gray_files_are_read_as_gray(tmp_path, suffix):
    gray = gray_of(picture())
    path = tmp_path / f"gray{suffix}"
    cv2.imwrite(str(path), gray)
    frame = read_image(path)
    assert frame.shape == gray.shape and frame_color(frame) == "gray"
    if suffix != ".jpg":
        assert np.array_equal(frame, gray)


def test_gray_with_alpha_and_gray_saved_as_colour_are_gray(tmp_path):
    gray = gray_of(picture())
    Image.fromarray(np.dstack([gray, np.full_like(gray, 200)]), "LA").save(tmp_path / "la.png")
    Image.fromarray(np.dstack([gray] * 3), "RGB").save(tmp_path / "rgb.jpg", quality=90)
    for name in ("la.png", "rgb.jpg"):
        frame = read_image(tmp_path / name)
        assert frame_color(frame) == "gray", name
    assert np.array_equal(conform(read_image(tmp_path / "la.png"), "gray", "la.png")[:, :, 0], gray)


def test_a_sixteen_bit_gray_file_is_still_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((16, 16), 40000, np.uint16))
    with pytest.raises(SourceError, match="is a 16-bit image"):
        read_image(tmp_path / "deep.png")


def test_the_mode_of_a_set(tmp_path):
    colour, gray = picture(), gray_of(picture())
    black = np.zeros((16, 16, 3), np.uint8)
    assert dataset_color([(Path("a"), gray), (Path("b"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)), (Path("c"), black)]) == "gray"
    assert dataset_color([(Path("a"), colour), (Path("c"), black)]) == "rgb"
    assert dataset_color([]) == "rgb"
    cv2.imwrite(str(tmp_path / "001.png"), gray)
    cv2.imwrite(str(tmp_path / "002.png"), colour)
    with pytest.raises(MixedColours) as mixed:
        files_color(sorted(tmp_path.iterdir()), "the images in /data")
    line = str(mixed.value)
    assert "\n" not in line and f"{tmp_path / '001.png'} is grayscale, {tmp_path / '002.png'} is colour" in line


def test_input_color_defaults_to_rgb_and_is_checked():
    data = json.loads((DEMO_MODEL / "inspectd.json").read_text())
    assert ModelMetadata.from_json(data, "m/inspectd.json").input.color == "rgb"
    del data["input"]["color"]  # a folder exported before the field existed
    meta = ModelMetadata.from_json(data, "m/inspectd.json")
    assert meta.input.color == "rgb" and meta.to_json()["input"]["color"] == "rgb"
    data["input"]["color"] = "grey"
    with pytest.raises(ModelFolderError) as bad:
        ModelMetadata.from_json(data, "m/inspectd.json")
    assert str(bad.value).startswith("m/inspectd.json: field input.color: must be one of rgb, gray, got \"grey\"")
    data["input"]["color"] = "gray"
    assert ModelMetadata.from_json(data, "m/inspectd.json").input.color == "gray"


def test_gray_frames_archive_as_gray_png():
    gray = gray_of(picture())
    for fast in (False, True):
        decoded = cv2.imdecode(np.frombuffer(b"".join(encode_png(gray[:, :, None], fast=fast)), np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(decoded, gray)


@pytest.fixture
def gray_demo(tmp_path) -> Path:
    """The demo folder marked gray: enough to see which frames the runtime takes (its scores mean nothing)."""
    folder = tmp_path / "gray-demo"
    shutil.copytree(DEMO_MODEL, folder)
    data = json.loads((folder / "inspectd.json").read_text())
    data["input"]["color"] = "gray"
    (folder / "inspectd.json").write_text(json.dumps(data, indent=2))
    assert read_model_folder(folder).metadata.input.color == "gray"
    return folder


def image_errors(stderr: str, model_dir: Path) -> list[str]:
    """The lines about images: without the model's precision fallback, which a CPU with bf16 prints first."""
    return [line for line in stderr.strip().splitlines() if not line.startswith(f"inspectd: {model_dir}: ")]


def test_infer_with_a_gray_folder_takes_gray_files_and_refuses_colour_ones(gray_demo, tmp_path):
    colour = picture(240, 320)
    gray = gray_of(colour)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "equal.png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    result = cli("infer", gray_demo, tmp_path / "gray.png", tmp_path / "equal.png", tmp_path / "colour.png", "--json",
                     "--heatmap-dir", tmp_path / "heat")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["score"] == records[1]["score"]  # one channel or three equal: the same input, the same score
    errors = image_errors(result.stderr, gray_demo)
    assert len(errors) == 1 and errors[0].startswith(f"inspectd: {tmp_path / 'colour.png'}: is a colour frame"), result.stderr
    assert records[2]["error"] == errors[0].removeprefix("inspectd: ")
    assert cv2.imread(str(tmp_path / "heat" / f"{tmp_path.name}_gray_heatmap.png")).shape == (240, 640, 3)


def test_infer_with_a_colour_folder_refuses_gray_files_naming_the_fix(tmp_path):
    gray = gray_of(picture(240, 320))
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "equal.jpg"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    result = cli("infer", DEMO_MODEL, tmp_path / "gray.png", tmp_path / "equal.jpg")
    assert result.returncode == 1 and not result.stdout
    errors = image_errors(result.stderr, DEMO_MODEL)
    assert len(errors) == 2, result.stderr
    for line, path in zip(errors, ("gray.png", "equal.jpg")):
        assert line.startswith(f"inspectd: {tmp_path / path}: is a grayscale frame") and "retrain with the grayscale images" in line


def test_bench_feeds_a_frame_of_the_folders_mode(gray_demo):
    result = cli("bench", gray_demo, "--frames", "2")
    assert result.returncode == 0, result.stderr
