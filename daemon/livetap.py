"""The live tap's files: what the station writes under /run for the page, and the page reads.

The station never touches the network; it shares its latest frame by writing, at a configured rate,
into one folder (``[live] path``, /run/inspectd/live by default, a tmpfs):

- ``<seq>.jpg``: the frame, at most SHOWN_MAX_SIDE pixels a side (in setup mode the whole camera
  frame, the ROI drawn by the page from ``roi``; while inspecting the frame the model judged);
- ``<seq>-heatmap.png``: the latest verdict's anomaly map, coloured on the archive's fixed scale (blue 0,
  green the threshold, red twice the threshold), at the map's own resolution;
- ``live.json``: the state below, naming those files, written last.

Every file is written under a temporary name and renamed (a reader sees a whole file or the previous
one); the last KEEP generations stay, so a reader that read ``live.json`` still finds the files it names.

    >>> state = LiveState(seq=3, time=1.5, mode="setup", frame="00000003.jpg", frame_size=(640, 480), shown_size=(640, 480))
    >>> LiveState.from_json(state.to_json()) == state
    True
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMAT = "inspectd-live"
VERSION = 1
STATE_FILE = "live.json"
STATE_MAX_BYTES = 256 * 1024
KEEP = 3  # generations of image files kept beside live.json
SHOWN_MAX_SIDE = 960  # the page needs no more; a 12-megapixel frame would cost the station a big JPEG twice a second
HISTOGRAM_BINS = 64
CLIPPED_DARK, CLIPPED_BRIGHT = 2, 253  # grey levels at or beyond which a pixel counts as clipped
FILE_NAME = re.compile(r"[0-9]{8}(-heatmap)?\.(jpg|png)")
MODES = ("inspecting", "setup")


class LiveFormatError(ValueError):
    """live.json is not a live tap this inspectd reads."""


def frame_name(seq: int) -> str:
    return f"{seq % 10**8:08d}.jpg"


def heatmap_name(seq: int) -> str:
    return f"{seq % 10**8:08d}-heatmap.png"


@dataclass
class Aids:
    """Setup aids, measured on the frame's grey levels before any compression."""

    sharpness: float  # variance of the Laplacian: rises as the image gets sharper (compare it with itself, not across scenes)
    histogram: list[int]  # HISTOGRAM_BINS bins of grey levels 0-255, counted on every other row and column
    clipped_dark: float  # share of pixels at or below CLIPPED_DARK
    clipped_bright: float  # share of pixels at or above CLIPPED_BRIGHT
    mean: float  # mean grey level
    fps: float  # frames per second the station takes (verdicts while inspecting, frames read in setup mode)


@dataclass
class LiveState:
    seq: int  # increases with every write
    time: float  # when written, seconds since the epoch
    mode: str  # "inspecting" or "setup" (no model loaded)
    frame: str  # the frame's file in the folder
    frame_size: tuple[int, int]  # (width, height) of the frame the station had
    shown_size: tuple[int, int]  # (width, height) of the JPEG
    roi: list[int] | None = None  # [x, y, width, height] in the frame, to draw (setup mode)
    heatmap: str | None = None  # the map's file, with a verdict
    region: list[float] | None = None  # where the map lies in the frame: [top, left, bottom, right], fractions of its size
    verdict: dict | None = None  # records.VerdictRecord.to_json() of the frame's verdict
    aids: Aids | None = None
    rate_hz: float = 0.0  # the configured rate
    note: str = ""  # what the station wants the page to say (setup mode: why there is no verdict)
    format: str = field(default=FORMAT)
    version: int = field(default=VERSION)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> LiveState:
        """Refuses what it cannot show faithfully: another format or version, a file name that is not the tap's, non-finite numbers."""
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise LiveFormatError(f"not {FORMAT} version {VERSION}")
        try:
            aids = data.get("aids")
            state = cls(seq=int(data["seq"]), time=float(data["time"]), mode=str(data["mode"]), frame=str(data["frame"]),
                        frame_size=_pair(data["frame_size"]), shown_size=_pair(data["shown_size"]), roi=data.get("roi"),
                        heatmap=data.get("heatmap"), region=data.get("region"), verdict=data.get("verdict"),
                        aids=None if aids is None else Aids(**aids), rate_hz=float(data.get("rate_hz", 0.0)), note=str(data.get("note", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise LiveFormatError(f"malformed: {exc}") from None
        if state.mode not in MODES or not FILE_NAME.fullmatch(state.frame) or (state.heatmap and not FILE_NAME.fullmatch(state.heatmap)):
            raise LiveFormatError("names a mode or a file the tap does not write")
        if not math.isfinite(state.time):
            raise LiveFormatError("time is not finite")
        return state


def _pair(value: object) -> tuple[int, int]:
    width, height = value  # type: ignore[misc]
    return int(width), int(height)


def is_tap_file(name: str) -> bool:
    """A name the tap writes (its frames, heatmaps, live.json, and their temporary files): the only files it deletes.

    >>> is_tap_file("00000042.jpg"), is_tap_file(".00000042-heatmap.png.tmp"), is_tap_file("part.jpg"), is_tap_file("00000042.jpg.tmp")
    (True, True, False, False)
    """
    return re.fullmatch(r"\.?(\d{8}\.jpg|\d{8}-heatmap\.png|live\.json)(\.tmp)?", name) is not None and \
        (name.startswith(".") == name.endswith(".tmp"))


def write_atomically(folder: Path, name: str, data: bytes) -> None:
    """``name`` in ``folder`` holding ``data``, whole or not at all (a tmpfs: no fsync; a power cut empties it anyway).
    The temporary file is made anew: a link put under its name is removed, never written through."""
    temp = folder / f".{name}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with open(descriptor, "wb") as file:
        file.write(data)
    os.replace(temp, folder / name)
