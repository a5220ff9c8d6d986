"""Reading and writing image files, with errors a person can act on."""

from __future__ import annotations

import os
import stat
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from inspectd.daemon.errors import InspectdError, SourceError
from inspectd.daemon.files import file_kind
from inspectd.daemon.runtime.image_header import Header, Refused, read_header

# OpenCV prints its own decoder complaints to stderr; inspectd reports a bad file in one line of its own.
if hasattr(cv2, "setLogLevel"):  # OpenCV 4.x (the Debian package bundles 4.11: numpy 1.x, see README)
    cv2.setLogLevel(0)  # LOG_LEVEL_SILENT
else:  # OpenCV 5
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

# libjpeg decodes a damaged JPEG anyway (a header declaring more rows than the data holds, a bad
# Huffman code: rows filled in) and says so only in a warning on stderr. These warnings make it a
# bad frame; harmless ones (an unknown JFIF revision, a bogus ICC profile) do not.
JPEG_DAMAGE_WARNINGS = (b"Corrupt JPEG data", b"Premature end of JPEG file", b"Invalid SOS parameters",
                        b"Inconsistent progression sequence", b"Huffman")
_stderr_lock = threading.Lock()
_warning_sink: list[int] = []  # one memfd for the process, emptied at every use

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# A frame bigger than this is refused from its header, before decoding (config: source.max_pixels).
# 40 megapixels: above every station camera (a Pi HQ camera is 12.3), far below what exhausts a Pi's memory.
DEFAULT_MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 512 * 1024 * 1024


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an 8-bit image: colour as a BGR uint8 array (height x width x 3), grayscale as height x width.

    Alpha is dropped (gray + alpha is gray), as PIL's convert("RGB") does in training, and EXIF
    orientation ignored, as anomalib does. Whether a model takes the frame is its colour mode's
    call (``runtime.colour``), not the reader's.

    Only regular files are opened (a FIFO named like an image would block forever), and the
    size the header declares is checked against ``max_pixels`` before anything is decoded.
    Every problem is a SourceError naming the file.
    """
    path = Path(path)
    try:
        # Opened without blocking and judged by what was opened: a FIFO swapped in after a check would block the open.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(descriptor, "rb") as handle:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise SourceError(f"is not a regular file ({file_kind(info.st_mode)}); only image files are read", file=path,
                                  fix="remove it from the folder")
            if info.st_size > MAX_FILE_BYTES:
                raise SourceError(f"is {info.st_size / 2**20:.0f} MB, more than any frame of {max_pixels / 1e6:g} megapixels",
                                  file=path, fix="check what wrote it")
            data = handle.read(info.st_size + 1)  # what it holds (a file growing meanwhile is read up to its size then)
    except OSError as exc:
        raise SourceError(f"cannot be read ({exc.strerror or exc})", file=path, fix="check the path and its permissions") from None
    header = bounded_header(data, path, max_pixels)
    is_jpeg = header.format == "JPEG"
    if is_jpeg and data.find(b"\xff\xd9", data.rfind(b"\xff\xda")) == -1:  # no end marker after the last scan
        raise SourceError("is a JPEG cut short (no end-of-image marker after its last scan); a file still being written?",
                          file=path, fix="write frames under a temporary name and rename them when complete")
    image, failure = None, None
    with _decoder_messages() as messages:
        try:
            image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED) if data else None
        except cv2.error as exc:
            failure = str(exc).strip().splitlines()[-1][:100]
    damage = [line for line in messages if is_jpeg and line.startswith(JPEG_DAMAGE_WARNINGS)]
    failed = failure is not None or image is None or image.size == 0
    decoders = [line for line in messages if not line.startswith(b"inspectd")]  # not a line of ours another thread wrote
    reason = damage[0] if damage else decoders[0] if failed and decoders else None  # the decoder's own words
    for line in messages:  # harmless warnings (an unknown JFIF revision, a bogus ICC profile): passed on, whole lines
        if line not in damage and line is not reason:
            say(line.decode("utf-8", "replace").rstrip("\n"))
    said = reason.decode("utf-8", "replace").strip()[:100] if reason else failure
    if damage:
        raise SourceError(f"is a damaged JPEG (the decoder said: {said})", file=path, fix="replace the file")
    if failed:
        raise SourceError(f"not a readable image ({f'the decoder said: {said}' if said else 'empty or corrupt, or not PNG/JPEG/BMP/TIFF/WebP'})",
                          file=path, fix="replace the file")
    if image.dtype != np.uint8:
        raise SourceError(f"is a {image.dtype.itemsize * 8}-bit image; models are trained on 8-bit images", file=path,
                          fix="convert it to 8 bits per channel (e.g. PNG or JPEG from the station camera)")
    if image.ndim == 3 and image.shape[2] in (1, 2):  # gray (+ alpha): OpenCV gives most as 2-D already
        image = np.ascontiguousarray(image[:, :, 0])
    elif image.ndim == 3 and image.shape[2] == 4:
        image = np.ascontiguousarray(image[:, :, :3])  # drop alpha, as PIL's convert("RGB") does in training
    return image


def bounded_header(data: bytes, path: Path, max_pixels: int) -> Header:
    """The file's header when everything the decoder would allocate for it is bounded by ``max_pixels`` (and 8 bits, 4
    channels a pixel); else a SourceError, before a byte is decoded."""
    try:
        header = read_header(data)
    except Refused as exc:
        raise SourceError(f"not a readable image: {exc}", file=path, fix="send PNG or JPEG frames (a station camera's)") from None
    width, height = header.width, header.height
    if 0 in (width, height):  # a header cut short or zeroed: corrupt, not too big
        raise SourceError(f"not a readable image (its header declares {width}x{height} pixels)", file=path, fix="replace the file")
    if width * height > max_pixels:
        raise SourceError(f"declares {width}x{height} pixels, outside 1 to {max_pixels:,} (source.max_pixels)", file=path,
                          fix="send frames of the camera's size, or raise source.max_pixels")
    if header.pixels > max_pixels:
        raise SourceError(f"declares tiles of {header.largest:,} pixels, more than source.max_pixels ({max_pixels:,})", file=path,
                          fix="write it untiled, or as PNG")
    if header.bits > 8:
        raise SourceError(f"is a {header.bits}-bit image; models are trained on 8-bit images", file=path,
                          fix="convert it to 8 bits per channel (e.g. PNG or JPEG from the station camera)")
    if not 1 <= header.channels <= 4:
        raise SourceError(f"has {header.channels} channels; 1 (gray) to 4 (colour and alpha) are read", file=path, fix="replace the file")
    return header


@contextmanager
def _decoder_messages():
    """What the decoders (libpng, libjpeg, ...) write to stderr while decoding, as lines, kept from the real stderr.

    The decoders have no other channel: libjpeg's damage warnings and libpng's errors (which it writes in two
    pieces) come only so. The decoding holds ``_stderr_lock``, so a line written with ``say`` never lands inside
    one; the caller writes on to the real stderr what it does not turn into its own message.
    """
    lines: list[bytes] = []
    with _stderr_lock:
        try:
            if not _warning_sink:
                _warning_sink.append(os.memfd_create("inspectd-decoder-messages", os.MFD_CLOEXEC))
            sink = _warning_sink[0]
            os.ftruncate(sink, 0)
            os.lseek(sink, 0, os.SEEK_SET)
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, AttributeError, ValueError):  # no stderr to swap (closed), no memfd: decode without
            yield lines
            return
        try:
            os.dup2(sink, 2)
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            lines += os.pread(sink, os.fstat(sink).st_size, 0).splitlines(keepends=True)


def say(line: str) -> None:
    """Write one line to stderr, whole: never inside what a decoder in another thread is writing."""
    with _stderr_lock:
        print(line, file=sys.stderr, flush=True)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def write_png(path: Path, image: np.ndarray) -> None:
    """``path`` as a PNG, whole or not at all: written beside it under a temporary name, then renamed (a full disk or a
    kill leaves no partial file under the real name). InspectdError naming the file when it cannot be written."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise InspectdError("could not encode the image as PNG", file=path)
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with open(descriptor, "wb") as handle:
                handle.write(encoded.tobytes())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InspectdError(f"cannot be written ({exc.strerror or exc})", file=path,
                            fix="check the folder exists, is writable and has room") from None
