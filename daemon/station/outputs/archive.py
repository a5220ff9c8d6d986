"""``[archive]``: each REJECT's frame and heatmap overlay (and optionally a sample of PASS
frames) as PNG in a state folder, bounded by a size quota, oldest deleted first.

Files: <path>/<YYYYmmdd-HHMMSS>-<frame>-<verdict>.png (the frame, lossless, reusable for
training) and the same name with -heatmap, labelled with the verdict and threshold the
station acted on. Writing happens on a thread of its own so a slow SD card never delays the
next verdict; the file name is decided at once, so the journal record can name it
(INSPECTD_IMAGE).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inspectd.daemon.errors import ConfigError, InspectdError
from inspectd.daemon.runtime.heatmap import overlay
from inspectd.daemon.runtime.images import write_png
from inspectd.daemon.station.outputs.interface import EventKind, Output, OutputConfig
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.verdict import FrameVerdict

# Frames waiting to be written, in bytes of pixels: a burst of rejects (a replay, a bad batch)
# is absorbed; beyond this the disk is not keeping up and frames are dropped with a fault record.
BACKLOG_BYTES = 128 * 1024 * 1024


@dataclass
class ArchiveConfig(OutputConfig):
    path: str = "/var/lib/inspectd/rejects"
    max_mb: float = setting(500.0, above=0, fix="a quota in megabytes, e.g. 500")  # oldest files deleted beyond it
    pass_sample_every: int = setting(0, minimum=0, fix="keep every Nth PASS frame too, or 0 for rejects only")

    def open(self, on_fault: Callable[[str], None]) -> Output:
        return ArchiveOutput(self, on_fault)


class ArchiveOutput:
    def __init__(self, config: ArchiveConfig, on_fault: Callable[[str], None] | None = None) -> None:
        self.folder = Path(config.path)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create '{self.folder}' ({exc.strerror})", key="archive.path", fix="fix the path or its permissions") from None
        self.quota = int(config.max_mb * 1024 * 1024)
        self.pass_every = config.pass_sample_every
        self.passes = 0
        self.on_fault = on_fault or (lambda message: None)
        self.files = sorted((p.stat().st_mtime, p, p.stat().st_size) for p in self.folder.glob("*.png"))
        self.used = sum(size for _, _, size in self.files)
        self.pending: queue.Queue = queue.Queue()
        self.backlog = 0  # bytes of pixels queued, guarded by backlog_lock
        self.backlog_lock = threading.Lock()
        self.writer = threading.Thread(target=self._write_loop, name="archive", daemon=True)
        self.writer.start()
        self.closed = False

    def verdict(self, verdict: FrameVerdict) -> None:
        if self.closed:
            return
        if not verdict.rejected:
            self.passes += 1
            if not self.pass_every or self.passes % self.pass_every:
                return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.folder / f"{stamp}-{verdict.frame:08d}-{verdict.verdict.lower()}.png"
        with self.backlog_lock:
            if self.backlog + verdict.pixels.nbytes > BACKLOG_BYTES:
                self.on_fault(f"archive is behind (disk slow?): frame {verdict.frame} not archived")
                return
            self.backlog += verdict.pixels.nbytes
        verdict.archived = path
        self.pending.put((path, verdict))

    def _write_loop(self) -> None:
        while True:
            item = self.pending.get()
            if item is None:
                return
            path, verdict = item
            try:
                write_png(path, verdict.pixels)
                heatmap = path.with_name(path.stem + "-heatmap.png")
                write_png(heatmap, overlay(verdict.pixels, verdict.inspection, threshold=verdict.threshold, rejected=verdict.rejected))
                for written in (path, heatmap):
                    size = written.stat().st_size
                    self.files.append((written.stat().st_mtime, written, size))
                    self.used += size
                self._enforce_quota()
            except (InspectdError, OSError) as exc:
                self.on_fault(f"archive: {exc}")
            with self.backlog_lock:
                self.backlog -= verdict.pixels.nbytes

    def _enforce_quota(self) -> None:
        while self.used > self.quota and self.files:
            _, oldest, size = self.files.pop(0)
            oldest.unlink(missing_ok=True)
            self.used -= size

    def event(self, kind: EventKind, message: str, **fields: object) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pending.put(None)
        self.writer.join(timeout=10)
