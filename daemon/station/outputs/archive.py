"""``[archive]``: each REJECT's frame and heatmap overlay (and optionally a sample of PASS
frames) in a folder of the station's own, within a quota: its oldest files deleted first,
never a file it did not write (``archive_files``: the folder is taken, locked, and each file
appears whole or not at all).

Files: <path>/<YYYYmmdd-HHMMSS>-<frame>-<verdict>.png (the frame, a lossless PNG, reusable for
training) and the same stem with -heatmap.jpg (the frame beside its overlay, labelled with the
verdict and threshold the station acted on: a picture for a person, so a JPEG, a tenth of a
PNG's size and time; ``encoding``). A frame above HEATMAP_MAX_PIXELS is shown scaled down in it
(a 40-megapixel overlay takes about 1 GB and seconds inside OpenCV).

Writing happens on a thread of its own so a slow SD card never delays the next verdict; the
verdict record is sent at once and names the file (INSPECTD_IMAGE) before it is written. What
keeps that name honest:

- A frame is *taken*, and named, only when it can be written soon: the frames waiting take
  less than BACKLOG_S seconds to write at the speed measured on this disk (per frame and per
  byte: ``write_cost``; and less than BACKLOG_BYTES of memory), and the filesystem has room for
  them (by what this station's files take, with a margin). A frame that is not taken is
  recorded without INSPECTD_IMAGE.
- The frame is stored, not deflated (``encoding.ENCODING``: lossless, as large as its pixels,
  a fifth of deflate's time): measured by bench/archive_burst.py, the only encoding that missed
  no frame of 200 rejects of 1456x1088 at 10 frames/s on a busy 2-core machine (issue 14). An
  encoding that deflates stores a frame while more than ``store_behind_s`` of writing waits
  behind it, and while a stop drains.
- Trouble is reported once per episode: one fault record when frames stop being archived
  (behind, no room on the disk, a write that failed), one record (start MESSAGE_ID,
  INSPECTD_RECOVERED = archive) when the archive takes frames again (RECOVER_AFTER in a row),
  with how many it missed. After a failed write, frames are written as unnamed probes, one
  every PROBE_EVERY_S, until one is written; the record that ends the episode names it. A
  taken frame whose write failed is named in a fault record (INSPECTD_UNWRITTEN) when it fails,
  with the error (ENOSPC: the disk is full).
- ``drain`` (on stop, before the stop record) waits for the frames taken, until a deadline the
  station sets below systemd's TimeoutStopSec; what is still unwritten then is abandoned and
  named in a fault record. The writer leaves OpenCV before the process exits (a thread inside
  OpenCV at interpreter exit aborts the process); it encodes the frame with ``png``, which stops
  between blocks of rows, and the heatmap picture (at most HEATMAP_MAX_PIXELS a side) inside
  OpenCV, waited for at most OPENCV_WAIT_S.
- After SIGKILL or a power cut: every verdict record sent is in the journal, no partial file
  exists (temporary files are deleted at the next start), and at most the frames taken in the
  last BACKLOG_S seconds of writing are named by their records and absent.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.runtime.heatmap import overlay
from inspectd.daemon.station.outputs.archive_files import ArchiveFolder, NoRoom, OwnershipError, check_ownership
from inspectd.daemon.station.outputs.interface import EventKind, Fault, Notice, Output, OutputConfig, describe, error_name
from inspectd.daemon.station.outputs.encoding import ENCODING, Encoding
from inspectd.daemon.station.outputs.png import Abandoned
from inspectd.daemon.station.outputs.write_cost import Estimate
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.verdict import FrameVerdict

BACKLOG_S = 4.0  # seconds of writing the frames waiting may take: what a stop must drain
BACKLOG_BYTES = 128 * 1024 * 1024  # pixels waiting, in memory; one frame is always taken when none waits
PRIOR_S_PER_BYTE = 200e-9  # before the first write is measured: 5 MB of pixels a second (frame, heatmap)
PRIOR_S_PER_FRAME = 0.01  # and per frame: two files created, flushed (fsync) and renamed
ROOM_PER_BYTE = 3.03  # disk room a frame needs per byte of its pixels, before one is measured: frame + heatmap (twice
ROOM_MARGIN = 1.25  # as wide) uncompressed, a bound PNG never passes; once measured, what this station's PNGs take x margin
ROOM_PER_FRAME = 8192  # and per frame: two files' headers and last filesystem blocks
ROOM_SLACK = 64 * 1024
PROBE_EVERY_S = 2.0  # after a failed write, how often a frame is tried again
RECOVER_AFTER = 3  # frames taken in a row that end an episode of refusals (no record pair per frame when just too slow)
OPENCV_WAIT_S = 3.0  # on stop, how long to wait for the writer to leave OpenCV (the heatmap) once abandoned
HEATMAP_MAX_PIXELS = 4_000_000  # the frame as the heatmap shows it, at most
OWN_FOLDER_FIX = "give the archive a folder of its own (absent or empty), e.g. /var/lib/inspectd/rejects"


@dataclass
class ArchiveConfig(OutputConfig):
    path: str = "/var/lib/inspectd/rejects"
    max_mb: float = setting(500.0, above=0, fix="a quota in megabytes, e.g. 500")  # oldest files deleted beyond it
    pass_sample_every: int = setting(0, minimum=0, fix="keep every Nth PASS frame too, or 0 for rejects only")

    def open(self, on_fault: Callable[[Notice], None]) -> Output:
        return ArchiveOutput(self, on_fault)


@dataclass
class Item:
    verdict: FrameVerdict
    path: Path
    named: bool  # its verdict record names it (INSPECTD_IMAGE); False: a probe after a failed write
    nbytes: int
    written: bool = False  # the frame's file (not yet the heatmap) is on disk
    size: int = 0  # bytes written for it
    fast: bool = False  # stored, not deflated: the archive was behind, or stopping
    given_up: bool = False  # reported as not written at stop: nothing more to say about it


@dataclass
class WriterStats:
    """What the writer did since the start (bench/archive_burst.py reads it)."""

    frames: int = 0  # frames archived whole: the frame's file and its heatmap picture
    encode_s: float = 0.0  # of these, seconds making the files' bytes: the frame's PNG, the heatmap picture and its encoding
    write_s: float = 0.0  # seconds writing them to the folder (flushed to the disk)
    cpu_s: float = 0.0  # the writer thread's CPU seconds
    bytes: int = 0  # their files' bytes
    most_waiting: int = 0  # the most frames ever taken and not yet written


@dataclass
class Episode:
    """A time when frames are not archived, from its fault record to its recovery record."""

    reason: str
    probing: bool  # a write failed: only a written probe ends it
    missed: int = 0  # frames not archived since it began
    taken: int = 0  # frames taken in a row since the last refusal


class ArchiveOutput:
    name = "archive"

    def __init__(self, config: ArchiveConfig, on_fault: Callable[[Notice], None] | None = None, encoding: Encoding = ENCODING) -> None:
        path = Path(config.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # the folder itself is made when it is taken (``start``)
            check_ownership(path)
        except OSError as exc:
            raise ConfigError(f"cannot create '{path}' ({exc.strerror})", key="archive.path",
                              fix="fix the path or its permissions") from None
        except OwnershipError as exc:
            raise ConfigError(str(exc), key="archive.path", fix=OWN_FOLDER_FIX) from None
        self.folder = ArchiveFolder(path, int(config.max_mb * 1024 * 1024))
        self.pass_every = config.pass_sample_every
        self.encoding = encoding
        self.stats = WriterStats()
        self.passes = 0
        self.notify = on_fault or (lambda notice: None)
        self.lock = threading.Condition()  # everything below, shared by the loop and the writer
        self.pending: deque[Item] = deque()
        self.current: Item | None = None  # being written
        self.backlog = 0  # bytes of pixels of pending + current
        self.seconds = Estimate(PRIOR_S_PER_FRAME, PRIOR_S_PER_BYTE)  # to write a frame here
        self.room = Estimate(ROOM_PER_FRAME, ROOM_PER_BYTE)  # on the disk, for a frame
        self.episode: Episode | None = None
        self.probe_pending = False
        self.next_probe_at = 0.0
        self.abandoned: list[int] = []  # named frames given up at stop
        self.abandon = threading.Event()  # stop: write nothing more
        self.draining = False  # a stop waits for the writer: write fast
        self.opencv = threading.Lock()  # held while the writer is inside OpenCV
        self.writer: threading.Thread | None = None
        self.stopping = False
        self.closed = False

    def start(self) -> None:
        """Take the folder (made, or adopted when it holds nothing but the station's files; locked): delete what a killed
        run left half-written, count the station's files, start the writer. A folder that cannot be taken (not the
        station's, held by another station, not a folder) begins an episode of failed writes: the verdicts go on, and
        the probes take the folder as soon as it can be (``inspectd check`` and ``run`` refuse such a folder at start)."""
        with self.lock:
            if self.writer is not None or self.closed:
                return
            try:
                removed = self.folder.take()
            except (OwnershipError, OSError) as exc:
                removed = 0
                self._begin(f"cannot take {self.folder.path}: {describe(exc)}", probing=True, error=_error_code(exc))
            self.writer = threading.Thread(target=self._write_loop, name="archive", daemon=True)
            self.writer.start()
        if removed:
            self.notify(Notice(EventKind.FAULT, f"archive: deleted {removed} temporary files in {self.folder.path} left by a run that "
                                                "was killed while writing; that run's last records may name images it never wrote",
                               {"fault": Fault.ARCHIVE}))

    def verdict(self, verdict: FrameVerdict) -> None:
        if self.closed or self.abandon.is_set():
            return
        if not verdict.rejected:
            self.passes += 1
            if not self.pass_every or self.passes % self.pass_every:
                return
        self.start()
        with self.lock:
            nbytes = verdict.pixels.nbytes
            refusal = self._refusal(nbytes)
            episode = self.episode
            if episode is not None and episode.probing:
                if refusal is None and not self.probe_pending and time.monotonic() >= self.next_probe_at:
                    self._take(verdict, named=False)
                else:
                    episode.missed += 1
                return
            if refusal is not None:
                self._begin(refusal, probing=False)
                self.episode.missed += 1  # type: ignore[union-attr]
                self.episode.taken = 0  # type: ignore[union-attr]
                return
            self._take(verdict, named=True)
            if episode is not None:
                episode.taken += 1
                if episode.taken >= RECOVER_AFTER:
                    self._end(None)

    def event(self, kind: EventKind, message: str, **fields: object) -> None:
        pass

    def drain(self, deadline: float) -> None:
        """Wait until every frame taken is written or ``deadline`` (time.monotonic()) passes; then abandon the rest
        and say in a fault record which frames were named and not written."""
        if self.writer is None:
            return
        with self.lock:
            self.draining = True
            while (self.pending or self.current) and time.monotonic() < deadline:
                self.lock.wait(min(0.1, max(deadline - time.monotonic(), 0.001)))
            behind = bool(self.pending or self.current)
            if behind:
                self.abandon.set()
                self.lock.notify_all()
        if behind:
            if self.opencv.acquire(timeout=OPENCV_WAIT_S):  # the writer is out of OpenCV and will not go back in
                self.opencv.release()
            with self.lock:
                self.lock.wait_for(lambda: not self.pending and self.current is None, timeout=1.0)  # abandoned items go at once
        self._report_left()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.abandon.is_set():
            self.drain(time.monotonic() + BACKLOG_S)
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        if self.writer is not None:
            self.writer.join(timeout=1.0)  # alive after that only if stuck in a system call (a dead disk): no OpenCV
            if not self.writer.is_alive():
                self.folder.release()  # else it still writes through them; the process ends soon

    # ---------------------------------------------------------------- the loop's side (under self.lock)

    def _refusal(self, nbytes: int) -> str | None:
        """Why a frame of ``nbytes`` of pixels cannot be taken now, or None."""
        waiting = len(self.pending) + (self.current is not None)
        if self.backlog:
            if self.backlog + nbytes > BACKLOG_BYTES:
                return f"behind: {waiting} frames ({self.backlog / 2**20:.0f} MB of pixels) wait to be written"
            if self.seconds.of(waiting + 1, self.backlog + nbytes) > BACKLOG_S:
                return (f"behind: a frame takes about {self.seconds.of(1, nbytes):.1f} s to write here and {waiting} wait "
                        f"(at most {BACKLOG_S:g} s of writing may wait)")
        need = int(self.room.of(waiting + 1, self.backlog + nbytes)) + ROOM_SLACK
        try:
            disk = os.statvfs(self.folder.path)
        except OSError:
            return None  # the write will say what is wrong
        room = disk.f_bavail * disk.f_frsize + self.folder.reclaimable(need)
        if room < need:
            return (f"no room on the disk: {disk.f_bavail * disk.f_frsize / 2**20:.1f} MB free in {self.folder.path}, the frames "
                    f"taken need up to {need / 2**20:.1f} MB")
        return None

    def _take(self, verdict: FrameVerdict, named: bool) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.folder.path / f"{stamp}-{verdict.frame:08d}-{verdict.verdict.lower()}.png"
        item = Item(verdict, path, named, verdict.pixels.nbytes)
        if named:
            verdict.archived = path
        else:
            self.probe_pending = True
        self.pending.append(item)
        self.backlog += item.nbytes
        self.stats.most_waiting = max(self.stats.most_waiting, len(self.pending) + (self.current is not None))
        self.lock.notify_all()

    def _begin(self, reason: str, probing: bool, error: str = "", unwritten: list[int] | None = None) -> None:
        """A fault record when frames stop being archived, or when refusals turn into a failed write; else nothing."""
        episode = self.episode
        if episode is not None and (episode.probing or not probing):
            if unwritten:  # taken before the episode began, failed now: said now, for what it is (ENOSPC is the disk)
                self.notify(Notice(EventKind.FAULT, f"archive: frame {_frames(unwritten)} not written: {reason}; its record names "
                                                    "an image that does not exist",
                                   {"fault": Fault.ARCHIVE, "error": error or "unwritten", "unwritten": _frames(unwritten)}))
            return
        if episode is None:
            self.episode = episode = Episode(reason, probing)
        else:  # frames were refused; now a write failed: another fault
            episode.reason, episode.probing = reason, True
        until = "one is written" if probing else ("it catches up" if reason.startswith("behind") else "there is room")
        short = "writes failing" if probing else ("behind" if reason.startswith("behind") else "no room on the disk")
        tail = f"; frame {_frames(unwritten)}: named by its record, not written" if unwritten else ""
        fields: dict[str, object] = {"fault": Fault.ARCHIVE, "error": error or ("behind" if reason.startswith("behind") else "ENOSPC")}
        if unwritten:
            fields["unwritten"] = _frames(unwritten)
        self.notify(Notice(EventKind.FAULT, f"archive: {reason}; frames are recorded without INSPECTD_IMAGE until {until}{tail}", fields,
                           trouble=("archive", f"archive {short}: frames not archived")))

    def _end(self, probe: Item | None) -> None:
        episode, self.episode = self.episode, None
        assert episode is not None
        fields: dict[str, object] = {"recovered": Fault.ARCHIVE, "missed": episode.missed}
        written = ""
        if probe is not None:
            written = f"; frame {probe.verdict.frame} archived as {probe.path}"
            fields |= {"frame": probe.verdict.frame, "image": probe.path}
        self.notify(Notice(EventKind.START, f"archive: taking frames again{written}; {episode.missed} frames were not archived "
                                            f"({episode.reason})", fields, trouble=("archive", "")))

    def _report_left(self) -> None:
        with self.lock:
            left, self.abandoned = self.abandoned, []
            for item in [*self.pending, *([self.current] if self.current else [])]:  # the writer is stuck: give up on them
                if item.named and not item.written:
                    left.append(item.verdict.frame)
                item.given_up = True
            self.backlog -= sum(item.nbytes for item in self.pending)
            self.pending.clear()
            episode = self.episode
        if left:
            why = (f"while writes were failing ({episode.reason})" if episode is not None and episode.probing
                   else "the disk too slow for the time a stop may take")
            self.notify(Notice(EventKind.FAULT, f"archive: stopped before frames {_frames(left)} were written ({why}); their records "
                                                "name images that do not exist",
                               {"fault": Fault.ARCHIVE, "error": "stopped", "unwritten": _frames(left)}))

    # ---------------------------------------------------------------- the writer thread

    def _write_loop(self) -> None:
        while True:
            with self.lock:
                self.lock.wait_for(lambda: self.pending or self.stopping)
                if not self.pending:
                    return
                item = self.current = self.pending.popleft()
            started = time.monotonic()
            error = self._write(item)
            with self.lock:
                self.current = None
                self.backlog -= item.nbytes
                if error is None:
                    self._measure(item, time.monotonic() - started)
                self._settle(item, error)
                self.lock.notify_all()

    def _measure(self, item: Item, seconds: float) -> None:
        """What a frame costs here: seconds to write (deflated ones only: the admission stays on the safe side) and
        room on the disk, per byte of pixels; a running mean of the last few."""
        self.room.measured(item.nbytes, item.size * ROOM_MARGIN)
        if not item.fast:
            self.seconds.measured(item.nbytes, seconds)

    def _write(self, item: Item) -> Exception | None:
        verdict, stop, encoding = item.verdict, self.abandon.is_set, self.encoding
        with self.lock:  # behind, or stopping: stored, not deflated, so that it catches up (files as large as the pixels)
            item.fast = fast = self.draining or self.seconds.of(len(self.pending), self.backlog - item.nbytes) > encoding.store_behind_s
        clock, cpu = time.perf_counter(), time.thread_time()
        encode_s = write_s = 0.0
        try:
            if stop():
                raise Abandoned("stopped before the file was started")
            chunks = encoding.frame(verdict.pixels, stop, fast)
            encode_s, clock = encode_s + time.perf_counter() - clock, time.perf_counter()
            self.folder.write(item.path.name, chunks, stop)
            write_s, clock = write_s + time.perf_counter() - clock, time.perf_counter()
            item.written, item.size = True, sum(len(chunk) for chunk in chunks)
            with self.opencv:
                if stop():
                    raise Abandoned("stopped before the heatmap")
                chunks = encoding.heatmap(heatmap(verdict), stop, fast)
            encode_s, clock = encode_s + time.perf_counter() - clock, time.perf_counter()
            self.folder.write(f"{item.path.stem}-heatmap{encoding.heatmap_suffix}", chunks, stop)
            write_s += time.perf_counter() - clock
            item.size += sum(len(chunk) for chunk in chunks)
        except Exception as exc:  # noqa: BLE001 - the writer's fault boundary: every failure is a record
            return exc
        with self.lock:
            stats = self.stats
            stats.frames, stats.bytes = stats.frames + 1, stats.bytes + item.size
            stats.encode_s, stats.write_s, stats.cpu_s = stats.encode_s + encode_s, stats.write_s + write_s, stats.cpu_s + time.thread_time() - cpu
        return None

    def _settle(self, item: Item, error: Exception | None) -> None:
        """What a finished item means for the records (under self.lock)."""
        frame = item.verdict.frame
        if item.given_up:
            return
        lost = [frame] if item.named and not item.written else []
        if not item.named:
            self.probe_pending = False
        if error is None:
            if not item.named and self.episode is not None and self.episode.probing:
                self._end(item)
            return
        if isinstance(error, Abandoned):
            self.abandoned += lost
            return
        if not item.named:
            self.next_probe_at = time.monotonic() + PROBE_EVERY_S
            if self.episode is not None:
                self.episode.missed += 1
        if isinstance(error, (OSError, NoRoom, OwnershipError)):  # the disk or the folder: an episode, until a write succeeds again
            failed = f"{item.path.stem}-heatmap{self.encoding.heatmap_suffix}" if item.written else item.path.name
            self._begin(f"cannot write {failed}: {describe(error)}", probing=True, error=_error_code(error), unwritten=lost)
            return
        tail = f"; its record names {item.path}, which was not written" if lost else ""
        self.notify(Notice(EventKind.FAULT, f"archive: frame {frame} not archived: {describe(error)}{tail}",
                           {"fault": Fault.ARCHIVE, "error": error_name(error)}))


def heatmap(verdict: FrameVerdict) -> np.ndarray:
    """The frame beside its overlay, labelled with what the station acted on; at most HEATMAP_MAX_PIXELS a side."""
    pixels, inspection = verdict.pixels, verdict.inspection
    height, width = pixels.shape[:2]
    scale = math.sqrt(HEATMAP_MAX_PIXELS / max(height * width, 1))
    if scale < 1:
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        sy, sx = size[1] / height, size[0] / width
        top, left, bottom, right = inspection.region
        inspection = dataclasses.replace(inspection, frame_size=(size[1], size[0]), region=(top * sy, left * sx, bottom * sy, right * sx))
    return overlay(pixels, inspection, verdict.rule, verdict.verdict)


def _error_code(error: Exception) -> str:
    if isinstance(error, OSError) and error.errno:
        return errno.errorcode.get(error.errno, error_name(error))
    return error_name(error)


def _frames(frames: list[int] | None, shown: int = 20) -> str:
    frames = frames or []
    text = ", ".join(map(str, frames[:shown]))
    return text + (f" and {len(frames) - shown} more" if len(frames) > shown else "")
