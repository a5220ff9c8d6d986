"""The reject archive: each REJECT's frame and heatmap overlay (and optionally a sample of
PASS frames) as PNG in a state folder, bounded by a size quota, oldest deleted first.

Files: <path>/<YYYYmmdd-HHMMSS>-<frame>-<verdict>.png (the frame, lossless, reusable for
training) and the same name with -heatmap. Writing happens on a thread of its own so a slow
SD card never delays the next verdict; the file name is decided at once, so the journal
record can name it (INSPECTD_IMAGE).
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from inspectd.daemon.station.config import ArchiveConfig
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.runtime.heatmap import overlay
from inspectd.daemon.runtime.images import write_png
from inspectd.daemon.station.verdict import Verdict

# Frames waiting to be written, in bytes of pixels: a burst of rejects (a replay, a bad batch)
# is absorbed; beyond this the disk is not keeping up and frames are dropped with a fault record.
BACKLOG_BYTES = 128 * 1024 * 1024


class ArchiveOutput:
    def __init__(self, config: ArchiveConfig, on_fault=None) -> None:
        self.folder = Path(config.path)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InspectdError(f"archive.path: cannot create '{self.folder}' ({exc.strerror}); fix the path or its permissions") from None
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

    def verdict(self, verdict: Verdict) -> None:
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

    def event(self, kind: str, message: str, **fields: object) -> None:
        pass

    def close(self) -> None:
        self.pending.put(None)
        self.writer.join(timeout=10)
