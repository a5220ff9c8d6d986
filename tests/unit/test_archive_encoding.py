"""What the archive writes stays evidence and training material: every way it may encode a frame decodes to exactly
the frame, through the reader `infer`, `evaluate` and the dataset tools use (``read_image``) and through PIL (a
person's tools); the heatmap picture is a JPEG of the picture's size."""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.runtime.images import read_image
from inspectd.daemon.station.outputs.encoding import ENCODING, PNG_LEVEL_1, Encoding
from inspectd.daemon.station.outputs.png import BLOCK_ROWS, SUB, UP, Abandoned

ENCODINGS = [ENCODING, PNG_LEVEL_1] + [Encoding(f"filter {f}, strategy {s}", strategy=s, row_filter=f)
                                       for f in (UP, SUB) for s in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_RLE, zlib.Z_HUFFMAN_ONLY)]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[np.ndarray]:
    """A real scene (the demo station's, its height across two blocks of rows), noise, and gray frames."""
    data = generate_station_dataset(tmp_path_factory.mktemp("scene"), n_train=0, n_test_good=1, n_test_per_size=0, width=200,
                                    height=BLOCK_ROWS + 37)
    scene = cv2.imread(str(next((data / "test" / "good").glob("*.png"))))
    noise = np.random.default_rng(0).integers(0, 256, (BLOCK_ROWS * 2, 33, 3), dtype=np.uint8)
    return [scene, noise, cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY), noise[:, :, :1], scene[:1, :1]]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.name)
@pytest.mark.parametrize("fast", [False, True], ids=["deflated", "stored"])
def test_every_frame_encoding_is_lossless_for_every_reader(encoding, fast, frames, tmp_path):
    for number, frame in enumerate(frames):
        path = tmp_path / f"20261207-130000-{number:08d}-reject.png"
        path.write_bytes(b"".join(encoding.frame(frame, fast=fast)))
        expected = frame if frame.ndim == 2 or frame.shape[2] == 3 else frame[:, :, 0]
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), expected), (encoding.name, frame.shape)
        with Image.open(path) as pil:
            rgb = np.asarray(pil)
        assert np.array_equal(rgb, expected if expected.ndim == 2 else expected[:, :, ::-1])
        if expected.ndim == 3:
            assert np.array_equal(read_image(path), expected)


def test_the_heatmap_picture_is_a_jpeg_near_the_picture(frames):
    picture = np.hstack([frames[0], frames[0]])
    data = b"".join(ENCODING.heatmap(picture))
    assert data[:2] == b"\xff\xd8" and ENCODING.heatmap_suffix == ".jpg"
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == picture.shape and np.abs(decoded.astype(int) - picture).mean() < 3


def test_a_frame_is_abandoned_between_blocks_of_rows(frames):
    calls = []
    with pytest.raises(Abandoned):
        ENCODING.frame(frames[1], abandoned=lambda: calls.append(1) or len(calls) > 1)
    assert len(calls) == 2
