"""Reading image files: sizes from headers before decoding, and nothing but a SourceError for bad bytes."""

from __future__ import annotations

import doctest
import threading

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspectd.daemon.errors import SourceError
from inspectd.daemon.runtime import image_header
from inspectd.daemon.runtime.image_header import declared_size
from inspectd.daemon.runtime.images import read_image, say


@pytest.mark.parametrize("suffix,params", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".bmp", []),
                                           (".tiff", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
                                           (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])])
@pytest.mark.parametrize("width,height", [(1, 1), (37, 113), (640, 480), (1001, 667)])
def test_declared_size_matches_what_opencv_decodes(suffix, params, width, height):
    frame = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    data = cv2.imencode(suffix, frame, params)[1].tobytes()
    assert declared_size(data) == (width, height)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (height, width)


def test_oversized_header_is_refused_before_decoding(tmp_path):
    frame = np.zeros((300, 400, 3), np.uint8)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frame)
    with pytest.raises(SourceError, match=r"declares 400x300 pixels, outside 1 to 100,000 \(source.max_pixels\)"):
        read_image(path, max_pixels=100_000)
    assert read_image(path, max_pixels=120_000).shape == (300, 400, 3)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8X",
                                                              b"II*\x00", b"MM\x00*"]))
def test_any_bytes_give_an_image_or_one_source_error(tmp_path, data, prefix):
    declared_size(prefix + data)  # never raises
    path = tmp_path / "frame.png"
    path.write_bytes(prefix + data)
    try:
        image = read_image(path)
    except SourceError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=2000), flip=st.integers(min_value=0, max_value=2000))
def test_damaged_real_frames_give_an_image_or_one_source_error(tmp_path, cut, flip):
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for suffix in (".png", ".jpg"):
        data = bytearray(cv2.imencode(suffix, frame)[1].tobytes())
        data[flip % len(data)] ^= 0x5A
        path = tmp_path / f"frame{suffix}"
        path.write_bytes(bytes(data[: len(data) - cut % len(data)]))
        try:
            image = read_image(path)
        except SourceError:
            continue
        assert image.shape == (48, 64, 3)


def _jpeg(progressive: bool = False) -> bytearray:
    frame = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return bytearray(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes())


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_cut_short_anywhere_in_its_scans_is_refused(tmp_path, progressive):
    data = _jpeg(progressive)
    path = tmp_path / "frame.jpg"
    for end in range(data.find(b"\xff\xda"), len(data) - 1, 7):
        path.write_bytes(bytes(data[:end]))
        with pytest.raises(SourceError, match="cut short|not a readable image"):
            read_image(path)


def test_a_jpeg_declaring_more_rows_than_it_holds_is_refused(tmp_path, capfd):
    """libjpeg decodes it anyway, inventing the missing rows, and says so only on stderr.
    (Fewer rows than it holds gives, silently, the top of the real frame: a known limit.)"""
    path = tmp_path / "frame.jpg"
    for rows in (56, 96, 23088):
        data = _jpeg()
        sof = data.find(b"\xff\xc0")
        data[sof + 5:sof + 7] = rows.to_bytes(2, "big")
        assert declared_size(bytes(data)) == (64, rows)
        path.write_bytes(bytes(data))
        with pytest.raises(SourceError, match=r"frame.jpg: is a damaged JPEG \(the decoder said: Corrupt JPEG data"):
            read_image(path)
    assert "Corrupt JPEG data" not in capfd.readouterr().err  # said in the error, not on stderr


def _png_cut_short(path):
    """A PNG whose image data ends early: libpng says so on stderr ("libpng error: ...") in two writes."""
    data = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8))[1].tobytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_broken_png_is_refused_with_the_decoders_words_and_nothing_else_on_stderr(tmp_path, capfd):
    path = tmp_path / "frame.png"
    _png_cut_short(path)
    with pytest.raises(SourceError, match=r"frame.png: not a readable image \(the decoder said: libpng"):
        read_image(path)
    assert capfd.readouterr().err == ""  # said in the error, not on stderr


def test_lines_said_while_another_thread_decodes_broken_images_stay_whole(tmp_path, capfd):
    """inspectd infer prints a bad image's line while its reader thread decodes the next one; libpng writes its
    error in two pieces: a line of ours must never land between them."""
    path = tmp_path / "frame.png"
    _png_cut_short(path)
    done = threading.Event()

    def decode() -> None:
        while not done.is_set():
            with pytest.raises(SourceError):
                read_image(path)

    reader = threading.Thread(target=decode)
    reader.start()
    try:
        for index in range(300):
            say(f"inspectd: line {index}")
    finally:
        done.set()
        reader.join()
    assert capfd.readouterr().err.splitlines() == [f"inspectd: line {index}" for index in range(300)]


def test_a_harmless_jpeg_warning_does_not_refuse_the_frame(tmp_path):
    data = _jpeg()
    version = data.find(b"JFIF\x00") + 5
    data[version] = 91  # an unknown JFIF revision: libjpeg warns, the pixels are intact
    path = tmp_path / "frame.jpg"
    path.write_bytes(bytes(data))
    assert np.array_equal(read_image(path), cv2.imdecode(np.frombuffer(bytes(_jpeg()), np.uint8), cv2.IMREAD_COLOR))


def test_docstring_examples_run():
    assert doctest.testmod(image_header).failed == 0
