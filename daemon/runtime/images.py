"""Reading and writing image files, with errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspectd.daemon.errors import InspectdError

# OpenCV prints its own decoder complaints to stderr; inspectd reports a bad file in one line of its own.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | Path) -> np.ndarray:
    """Read an 8-bit colour image as a BGR uint8 array (EXIF orientation ignored, as anomalib does)."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InspectdError(f"{path}: cannot be read ({exc.strerror or exc}); check the path and its permissions") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InspectdError(f"{path}: not a readable image (empty or corrupt, or not PNG/JPEG/BMP/TIFF/WebP); replace the file")
    if image.dtype != np.uint8:
        raise InspectdError(
            f"{path}: is a {image.dtype.itemsize * 8}-bit image; the model was trained on 8-bit colour images, "
            f"convert it to 8 bits per channel (e.g. PNG or JPEG from the station camera)"
        )
    if image.ndim == 2 or image.shape[2] == 1:
        raise InspectdError(
            f"{path}: is a grayscale image; the model was trained on colour images, use the station camera's colour output"
        )
    if image.shape[2] == 4:
        image = np.ascontiguousarray(image[:, :, :3])  # drop alpha, as PIL's convert("RGB") does in training
    return image


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise InspectdError(f"{path}: could not encode the image as PNG")
    try:
        encoded.tofile(path)
    except OSError as exc:
        raise InspectdError(f"{path}: cannot be written ({exc.strerror or exc}); check the folder exists and is writable") from None
