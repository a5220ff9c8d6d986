"""``[source] kind = "directory"``: a folder of images, replayed once, in a loop, or watched.

    >>> source = DirectoryConfig(path="/srv/parts", mode="watch").open()   # doctest: +SKIP
    >>> frame = source.read(timeout_s=0.5)                                # doctest: +SKIP

``mode = "once"`` and ``"loop"`` replay the images in the folder by name and touch nothing.

``mode = "watch"`` inspects every image in the folder that has not been inspected yet, oldest
(by modification time) first: the files already waiting at start and those that arrived
while the daemon was down are inspected like new ones. The folder is the queue; the daemon
creates these sub-folders in it and never empties them:

- ``inspected/``: once a file's record (its verdict; a fault if the model could not score it)
  has been handed to the outputs (journal, archive, reject line), the file is moved there
  (``done = "delete"``: deleted instead). A name taken there gets ``~2``, ``~3``... before its suffix.
- ``failed/``: a file that cannot be decoded is moved there and reported: one fault record,
  never a verdict, and never reported again.
- ``skipped/``: with ``backlog = "skip"``, the files waiting when the daemon starts are moved
  there unread, with one fault record saying how many and where. Files that arrive later, and
  those waiting in a vanished folder when it comes back, are inspected.

At least once, never lost: an inspected file leaves the folder only after its record was
written (the loop confirms it through ``Frame.done``; a loop that does not, gets files moved
once two later ones were handed over, so the last two then wait while the line is idle). A
daemon killed in between inspects the file again after the restart: a second verdict, and a
second reject pulse, for the same file. A file that cannot be moved (a read-only folder) is
reported once, stays, and is not inspected again until the next start.

A file is read once it has not changed (size, modification time) for ``settle_s`` seconds.
Writing under a temporary name and renaming into the folder is safest; a file written in
place is read once it settles. One that fails to decode is read again whenever it changes,
and is reported (``failed/``) only once it has stayed unchanged and undecodable for
10 x ``settle_s``: a writer that pauses longer than that in the middle of a file must use a
temporary name. Temporary and hidden names (starting with ``.`` or ``~``, or ending in
anything but an image suffix: ``.tmp``, ``.part``...) are ignored until renamed. Something
named like an image that is not a regular file (a FIFO, socket, device, folder, or a symlink
that is dangling or loops) is never opened: one fault record per run, and it stays where it
is. A symlink to an image file is inspected, and the link is what moves. Names that are not
UTF-8 or hold control characters appear escaped (``\\xff``) in records.

One station per watched folder: the folder is locked (``flock``) while it is watched, and a
second station (or ``inspectd collect``, which reads a watched folder's files and leaves them
where they are) is refused, naming the process that holds it.

The folder must exist at start (a configuration error otherwise: it is a typo or a missing
install step, which restarting cannot fix; a mount point exists even before its mount). If it
vanishes or cannot be listed later, that is a source fault: a fault record, the ready line
stops, and the folder is retried with backoff; when it is back, inspection resumes with the
files waiting in it.
"""

from __future__ import annotations

import copy
import errno
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from inspectd.daemon.errors import ConfigError, InspectdError, SourceError
from inspectd.daemon.files import Claim, Held, file_kind
from inspectd.daemon.runtime.image_header import declared_size
from inspectd.daemon.runtime.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, list_images, read_image
from inspectd.daemon.station.settings import internal, setting
from inspectd.daemon.station.sources.interface import BadFrame, Frame, Source, SourceConfig, SourceEnded, SourceFault

MODES = ("once", "loop", "watch")
INSPECTED, FAILED, SKIPPED = "inspected", "failed", "skipped"  # sub-folders of a watched folder
WATCH_POLL_S = 0.05
UNREADABLE_AFTER = 10  # x settle_s unchanged and still undecodable: reported, moved to failed/
# The capture thread hands frames to the loop through a queue of one and reads the next frame
# meanwhile. When the source is asked for frame k, frame k-1 was queued, so the loop had taken
# k-2, so it had finished k-3 (its verdict handed to the outputs). The files of all but the last
# CONFIRM_LAG events are therefore recorded. Once the loop confirms frames itself (Frame.done),
# at once, this count is no longer used.
CONFIRM_LAG = 2
HEADER_BYTES = 256 * 1024  # enough of a file for its header (a JPEG's size may follow a large EXIF block)
WATCH_DEFAULTS = {"settle_s": 0.2, "done": "move", "backlog": "inspect"}


@dataclass
class DirectoryConfig(SourceConfig):
    kind: ClassVar[str] = "directory"

    path: str = ""  # the folder
    mode: str = setting("once", choices=MODES)
    settle_s: float = setting(WATCH_DEFAULTS["settle_s"], minimum=0, fix="seconds a watched file must stay unchanged before it is read, e.g. 0.2")
    done: str = setting(WATCH_DEFAULTS["done"], choices=("move", "delete"))  # watch: what happens to an inspected file
    backlog: str = setting(WATCH_DEFAULTS["backlog"], choices=("inspect", "skip"))  # watch: files waiting at start
    opened: bool = internal(False)  # a watched folder's backlog is skipped at the first open only
    consume: bool = internal(True)  # watch: files leave the folder once recorded; False: only read (``reading_only``)

    def check(self) -> None:
        super().check()
        if not self.path:
            raise ConfigError("is required for a directory source", key="path", fix="set it to the folder of images to replay or watch")
        if not Path(self.path).is_dir():
            raise ConfigError(f"'{self.path}' is not a folder", key="path", fix="create it or point to the images")
        if self.mode != "watch":
            for key, default in WATCH_DEFAULTS.items():
                if getattr(self, key) != default:
                    raise ConfigError(f"applies to mode = 'watch' only, and mode is {self.mode!r}", key=key,
                                      fix="remove it, or set mode = 'watch'")
            if not list_images(Path(self.path)):
                raise ConfigError(f"'{self.path}' holds no images ({', '.join(IMAGE_SUFFIXES)})", key="path",
                                  fix="add some, or use mode = 'watch' for files that arrive later")

    @property
    def frames_on_demand(self) -> bool:
        return self.mode == "watch"

    def sample(self) -> Frame | None:
        if self.mode == "watch":
            return None
        source = self.open()
        try:
            return source.read(0.0)
        except BadFrame:
            return None  # one unreadable file is a fault record at run time, not a configuration error
        finally:
            source.close()

    def reading_only(self) -> DirectoryConfig:
        """The same folder for a reader that is not the station (``inspectd collect``): a watched folder's files are read
        and left where they are, with the folder shared with other readers but never with a station."""
        reader = copy.copy(self)
        reader.consume = False
        return reader

    def preflight(self, notes: list[str]) -> Frame | None:
        """A replay: its first frame through the ROI, and the ROI against every image's header (a replay stops, exit 78, at the
        first image it does not fit). A watched folder: its frames come later, each checked as it arrives."""
        if self.mode == "watch":
            notes.append(f"source: watched folder {self.path}: frames come later, each checked as it arrives")
            return None
        frame = super().preflight(notes)
        self._roi_fits_every_image()
        return frame

    def _roi_fits_every_image(self) -> None:
        roi = self.valid_roi()
        if roi is None:
            return
        x, y, width, height = roi
        for path in list_images(Path(self.path)):
            try:
                with open(path, "rb") as handle:
                    size = declared_size(handle.read(HEADER_BYTES))
            except OSError:
                continue  # unreadable: a fault record for that file at run time
            if size is not None and (x + width > size[0] or y + height > size[1]):
                raise ConfigError(f"{roi} reaches outside the {size[0]}x{size[1]} frame '{path.name}'", key="source.roi",
                                  fix="make it fit inside every frame of the folder")

    def open_kind(self) -> Source:
        if self.mode != "watch":
            return DirectorySource(self.path, self.mode, self.max_pixels)
        source = WatchedFolder(self.path, self.max_pixels, self.settle_s, self.done,
                               skip_backlog=self.backlog == "skip" and not self.opened and self.consume, consume=self.consume)
        self.opened = True
        return source


class DirectorySource:
    """``mode = "once"`` or ``"loop"``: the images in the folder, by name."""

    def __init__(self, path: str | Path, mode: str = "once", max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.folder, self.mode, self.max_pixels = Path(path), mode, max_pixels
        if not self.folder.is_dir():
            raise SourceError(f"'{self.folder}' is not a folder", key="source.path", fix="create it or point to the images")
        self.name = f"directory:{self.folder}"
        self.queue = list_images(self.folder)
        if not self.queue:
            raise SourceError(f"'{self.folder}' holds no images ({', '.join(IMAGE_SUFFIXES)})", key="source.path",
                              fix="add some, or use mode = 'watch'")
        self.position = 0

    def read(self, timeout_s: float) -> Frame | None:
        if self.position == len(self.queue):
            if self.mode == "once":
                raise SourceEnded(f"replayed all {len(self.queue)} images of {self.folder}")
            self.position = 0
        self.position += 1
        path = self.queue[self.position - 1]
        try:
            pixels = read_image(path, self.max_pixels)
        except InspectdError as exc:
            raise BadFrame(str(exc)) from None
        return Frame(pixels, path.name, time.monotonic())

    def close(self) -> None:
        pass


Signature = tuple[int, int, int, int]  # device, inode, size, mtime (ns): the same content, as far as we can tell


def signature(info: os.stat_result) -> Signature:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def shown(name: str | Path) -> str:
    """A name as records print it: bytes that are not UTF-8 and control characters escaped."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return re.sub(r"[\x00-\x1f\x7f]", lambda match: f"\\x{ord(match.group()):02x}", text)


def is_candidate(name: str) -> bool:
    """Named like an image, and not hidden or temporary."""
    return not name.startswith((".", "~")) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


@dataclass
class Handed:
    """A file handed to the loop as a frame, waiting for its record before it leaves the folder."""

    name: str
    signature: Signature
    event: int  # which of this source's events (frames and faults) it was
    finished: bool = False


class WatchedFolder:
    """``mode = "watch"``: see the module docstring."""

    def __init__(self, path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, settle_s: float = 0.2, done: str = "move",
                 skip_backlog: bool = False, consume: bool = True) -> None:
        self.folder, self.max_pixels, self.settle_s, self.delete = Path(path), max_pixels, settle_s, done == "delete"
        self.consume = consume
        self.name = f"directory:{shown(self.folder)}"
        self.claim = self._claim()
        self.lock = threading.Lock()  # the loop confirms frames (Frame.done) from its own thread
        self.events = 0  # frames returned and faults raised so far
        self.handed: list[Handed] = []
        self.loop_confirms = False
        self.seen: dict[str, tuple[Signature, float]] = {}  # name -> signature and when it was first seen with it
        self.undecodable: dict[str, Signature] = {}  # failed to decode while recently changed: waits until it changes
        self.kept: dict[str, Signature] = {}  # inspected but could not be moved: not inspected again in this run
        self.reported: dict[str, tuple[int, int, int]] = {}  # special files reported (device, inode, type)
        self.notes: list[BadFrame] = []  # fault records to hand over, one per read
        self.ready: list[tuple[int, str, Signature]] = []  # from the last scan, oldest first
        self.move_trouble = ""  # the last problem moving a file, reported once until a move succeeds
        waiting = self._list()
        if skip_backlog:
            self._skip(waiting)

    def read(self, timeout_s: float) -> Frame | None:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            for entry in self.handed:
                if entry.event <= self.events - CONFIRM_LAG and not self.loop_confirms:
                    self._finish(entry)
            self.handed = [entry for entry in self.handed if not entry.finished]
        while True:
            if not self.ready and not self.notes:
                self._scan()
            with self.lock:
                if self.notes:
                    self.events += 1
                    raise self.notes.pop(0)
            while self.ready and not self.notes:
                frame = self._take(*self.ready.pop(0)[1:])
                if frame is not None:
                    return frame
            if self.notes:
                continue
            if time.monotonic() >= deadline:
                return None
            time.sleep(WATCH_POLL_S)

    def close(self) -> None:
        self.claim.release()

    def _claim(self) -> Claim:
        """The folder's lock: one station consumes it (exclusive); readers that leave the files share it, never with a station."""
        try:
            return Claim.take(self.folder, "the watched folder", shared=not self.consume)
        except Held as held:
            raise SourceFault(f"{held}", file=shown(self.folder),
                              fix="one station per watched folder: stop the other one (`inspectd collect` reads a watched "
                                  "folder only while no station consumes it)") from None
        except OSError as exc:
            raise SourceFault(f"cannot be listed ({exc.strerror or exc}): the watched folder is gone or unreadable", file=shown(self.folder),
                              fix="restore the folder (or its mount); inspection resumes with the files waiting in it") from None

    # --- finding files

    def _list(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.folder) as entries:
                return [entry for entry in entries if is_candidate(entry.name)]
        except OSError as exc:
            raise SourceFault(f"cannot be listed ({exc.strerror or exc}): the watched folder is gone or unreadable",
                              file=shown(self.folder),
                              fix="restore the folder (or its mount); inspection resumes with the files waiting in it") from None

    def _scan(self) -> None:
        """Fills ``ready`` with the files that have settled, oldest first; notes special files once."""
        looked = [(entry.name, *look(entry)) for entry in self._list()]  # outside the lock: the loop may be confirming a frame
        now, wall, ready = time.monotonic(), time.time(), []
        with self.lock:
            present = {name for name, _, _ in looked}
            for table in (self.seen, self.undecodable, self.kept, self.reported):
                for name in table.keys() - present:
                    del table[name]
            busy = {entry.name: entry.signature for entry in self.handed}
            for name, info, problem in looked:
                if info is None:
                    continue  # gone
                if problem is not None:
                    self._report(name, info, problem)
                    continue
                current = signature(info)
                if busy.get(name) == current or self.kept.get(name) == current:
                    continue
                first = self.seen.get(name)
                if first is None or first[0] != current:
                    self.seen[name] = (current, now)  # new or changed: it must be seen unchanged again
                    continue
                quiet = max(now - first[1], wall - info.st_mtime)
                needed = self.settle_s * (UNREADABLE_AFTER if self.undecodable.get(name) == current else 1)
                if quiet >= needed:
                    ready.append((info.st_mtime_ns, name, current))
        self.ready = sorted(ready)

    def _report(self, name: str, info: os.stat_result, problem: str) -> None:
        identity = (info.st_dev, info.st_ino, stat.S_IFMT(info.st_mode))
        if self.reported.get(name) != identity:
            self.reported[name] = identity
            self.notes.append(BadFrame(f"{problem}; named like an image, so it is skipped (reported once)", file=shown(self.folder / name),
                                       fix="remove it from the watched folder"))

    def _skip(self, entries: list[os.DirEntry]) -> None:
        moved, trouble = 0, ""
        for entry in sorted(entries, key=lambda entry: entry.name):
            try:
                if entry.is_file():
                    self._move(entry.name, SKIPPED)
                    moved += 1
            except OSError as exc:
                trouble = f"; {shown(entry.name)} and maybe others could not be moved ({exc.strerror or exc}) and will be inspected"
        if moved or trouble:
            self.notes.append(BadFrame(f"skipped the {moved} files waiting at start (source.backlog = 'skip'): moved to "
                                       f"{shown(self.folder / SKIPPED)}/{trouble}", file=shown(self.folder),
                                       fix="set source.backlog = 'inspect' to inspect them instead"))

    # --- reading one

    def _take(self, name: str, expected: Signature) -> Frame | None:
        """The frame of a settled file; None when it changed meanwhile or cannot be decoded (then perhaps a note)."""
        path = self.folder / name
        try:
            if signature(path.stat()) != expected:
                return None  # changed or replaced since the scan: it settles again
            pixels = read_image(path, self.max_pixels)
            after = signature(path.stat())
        except SourceError as exc:
            return self._unreadable(name, expected, exc.problem, exc.fix)
        except OSError:
            return None  # gone
        except Exception as exc:  # noqa: BLE001 - whatever else a file provokes is that file's fault alone, not the source's
            return self._unreadable(name, expected, f"could not be decoded ({type(exc).__name__}: {exc})", "replace the file")
        if after != expected:
            return None  # written to while it was read
        with self.lock:
            self.events += 1
            entry = Handed(name, expected, self.events)
            self.handed.append(entry)
        return Frame(pixels, shown(name), time.monotonic(), done=lambda: self._confirmed(entry))

    def _unreadable(self, name: str, expected: Signature, problem: str, fix: str | None) -> None:
        try:
            info = (self.folder / name).stat()
        except OSError:
            return None  # gone, or no longer a file: the next scan sees what it is
        if signature(info) != expected:
            return None  # still being written
        now = time.monotonic()
        quiet = max(now - self.seen.get(name, (expected, now))[1], time.time() - info.st_mtime)
        with self.lock:
            if quiet < self.settle_s * UNREADABLE_AFTER:
                self.undecodable[name] = expected  # changed recently, perhaps half written: read again when it changes or stays so
                return None
            if not self.consume:
                self.kept[name] = expected
                self.notes.append(BadFrame(problem, file=shown(self.folder / name), fix=fix))
                return None
            try:  # moved before it is reported: the file is never lost, and reported once
                self._move(name, FAILED)
                where = f"moved to {FAILED}/"
            except OSError as exc:
                self.kept[name] = expected
                where = f"it stays: cannot be moved to {FAILED}/ ({exc.strerror or exc})"
            self.notes.append(BadFrame(f"{problem}; {where}", file=shown(self.folder / name), fix=fix))
        return None

    # --- leaving the folder

    def _confirmed(self, entry: Handed) -> None:
        """Frame.done: the loop handed this frame's record to the outputs."""
        with self.lock:
            self.loop_confirms = True
            self._finish(entry)

    def _finish(self, entry: Handed) -> None:
        if entry.finished:
            return
        entry.finished = True
        if not self.consume:
            self.kept[entry.name] = entry.signature  # read once, left where it is
            return
        path = self.folder / entry.name
        try:
            if signature(path.stat()) != entry.signature:
                return  # replaced by a new file of the same name: that one is inspected in turn
            if self.delete:
                path.unlink()
            else:
                self._move(entry.name, INSPECTED)
            self.move_trouble = ""
        except FileNotFoundError:
            return  # someone else took it
        except OSError as exc:
            self.kept[entry.name] = entry.signature
            trouble = exc.strerror or str(exc)
            if trouble != self.move_trouble:
                self.move_trouble = trouble
                self.notes.append(BadFrame(f"inspected, but cannot be {'deleted' if self.delete else 'moved'} ({trouble}); it stays, "
                                           f"and will be inspected again after a restart (further files with this problem are "
                                           f"not reported)", file=shown(path),
                                           fix=f"let the service write {shown(self.folder)} (e.g. ReadWritePaths= in the unit)"))

    def _move(self, name: str, sub: str) -> None:
        """Into the station's sub-folder, never through a symlink put in its place (the parts would land wherever it points)."""
        folder = self.folder / sub
        try:
            folder.mkdir()
        except FileExistsError:
            kind = stat.S_IFMT(os.lstat(folder).st_mode)
            if kind != stat.S_IFDIR:
                what = "a symlink" if kind == stat.S_IFLNK else file_kind(kind)
                raise OSError(errno.ENOTDIR, f"{sub}/ is {what}, not a folder of the station's") from None
        os.rename(self.folder / name, free_name(folder, name))


def free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem~N.suffix`` when that is taken (cut to fit the file system's 255 bytes)."""
    target, number = folder / name, 1
    stem, suffix = os.path.splitext(name)
    while os.path.lexists(target):
        number += 1
        tag = os.fsencode(f"~{number}{suffix}")
        target = folder / os.fsdecode(os.fsencode(stem)[: 255 - len(tag)] + tag)
    return target


def look(entry: os.DirEntry) -> tuple[os.stat_result | None, str | None]:
    """An entry's status (None: gone) and, when it is not an image file, why: then the status is the entry's own, not its target's."""
    try:
        info = entry.stat()  # follows symlinks
        problem = None if stat.S_ISREG(info.st_mode) else f"is {file_kind(info.st_mode)}, not an image file"
    except FileNotFoundError:
        if not entry.is_symlink():
            return None, None
        problem = "is a symlink to nothing"
    except OSError as exc:
        problem = f"cannot be followed ({exc.strerror or exc})"
    if problem is None:
        return info, None
    try:
        return entry.stat(follow_symlinks=False), problem
    except OSError:
        return None, None
