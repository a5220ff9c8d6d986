"""The reject gallery: the archive's frames, newest first, each with its heatmap picture.

The archive (``station.outputs.archive``) writes ``<YYYYmmdd-HHMMSS>-<frame>-<verdict>.png`` and the same stem
with ``-heatmap.jpg`` (``-heatmap.png`` before issue 14: an adopted archive has both); only names of that shape are listed or served (``files.read_in``). The score and the time of
each come from its verdict record (INSPECTD_IMAGE names the file), looked up by the caller.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

FRAME = re.compile(r"([0-9]{8}-[0-9]{6})-([0-9]{8,})-(reject|pass)\.png")
SERVED = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9]{8,}-(reject|pass)(\.png|-heatmap\.jpg|-heatmap\.png)")
HEATMAP_SUFFIXES = ("-heatmap.jpg", "-heatmap.png")  # the archive's today, then an older version's
PAGE = 24
WRITING_S = 10.0  # a frame this recent without its heatmap is still being archived, not one whose heatmap failed


@dataclass
class Picture:
    name: str  # the frame's file
    heatmap: str | None  # its heatmap picture, when written
    time: datetime  # from the name: when the station took it (local time)
    frame: int
    verdict: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "heatmap": self.heatmap, "time": self.time.isoformat(timespec="seconds"), "frame": self.frame,
                "verdict": self.verdict.upper()}


def pictures(folder: Path, verdict: str | None = "reject", before: str | None = None, limit: int = PAGE) -> list[Picture]:
    """The newest ``limit`` frames of ``verdict`` (None: any) named before ``before``; symlinks and folders are left out."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    regular: dict[str, float] = {}  # name -> when it was last written
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            regular[entry.name] = info.st_mtime
    now = time.time()
    found = []
    for name in sorted(regular, reverse=True):
        match = FRAME.fullmatch(name)
        if not match or (verdict and match[3] != verdict) or (before and name >= before):
            continue
        heatmap = next((name.removesuffix(".png") + suffix for suffix in HEATMAP_SUFFIXES if name.removesuffix(".png") + suffix in regular), None)
        if heatmap is None and now - regular[name] < WRITING_S:
            continue  # its heatmap is being written (the archive writes it right after the frame): listed once it is
        try:
            when = datetime.strptime(match[1], "%Y%m%d-%H%M%S")
        except ValueError:
            continue
        found.append(Picture(name, heatmap, when, int(match[2]), match[3]))
        if len(found) >= limit:
            break
    return found
