"""The archive's folder: every file in it counts against the quota, oldest deleted first; a file
appears whole or not at all.

A file is written under a temporary name in the folder itself (``.inspectd-<name>.tmp``),
flushed to the disk (fsync), renamed to its name (atomic within a filesystem), and the folder
is flushed: a full disk, a kill -9 or a power cut leaves no partial file under a real name.
Room is made before a file is written, so the quota holds at every moment, temporary file
included. A folder deleted while the station runs is made again at the next write. ``open`` deletes the temporary files a killed run left, then counts every file in
the folder and its subfolders (frames, heatmaps and whatever else is there).

The folder holds two descriptors from ``open`` to ``close``, whatever it writes: the folder's
own (to flush it) and a slot each file takes while it is written, so a count of the daemon's
descriptors (bench/soak.py's leak check) sees no coming and going.
"""

from __future__ import annotations

import os
import stat
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from inspectd.daemon.station.outputs.png import Abandoned

TEMP_PREFIX, TEMP_SUFFIX = ".inspectd-", ".tmp"


class NoRoom(Exception):
    """The quota cannot hold the file even with every deletable file deleted."""


class ArchiveFolder:
    """
        >>> folder = ArchiveFolder(Path("/var/lib/inspectd/rejects"), quota=500 * 2**20)   # doctest: +SKIP
        >>> folder.open()       # stale temporary files deleted, everything counted   # doctest: +SKIP
        >>> folder.write("000412-reject.png", [b"..."])        # doctest: +SKIP
    """

    def __init__(self, path: Path, quota: int) -> None:
        self.path, self.quota = path, quota
        self.files: deque[tuple[float, str, int]] = deque()  # (modified, path, bytes), oldest first
        self.used = 0  # bytes of every file counted
        self.folder_fd = self.slot = -1

    def open(self) -> int:
        """Deletes the temporary files a killed run left; counts every file. Returns how many temporary files went."""
        removed, found = 0, []
        for folder, _, names in os.walk(self.path):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                    if folder == str(self.path) and name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                        os.unlink(path)
                        removed += 1
                        continue
                except OSError:
                    continue  # gone meanwhile, or not ours to delete: counted if it can be seen
                if not stat.S_ISDIR(info.st_mode):
                    found.append((info.st_mtime, path, info.st_size))
        self.files = deque(sorted(found))
        self.used = sum(size for _, _, size in found)
        try:
            self._descriptors()
        except OSError:
            pass  # the first write says what is wrong, and tries again
        return removed

    def _descriptors(self) -> None:
        if self.folder_fd < 0:
            folder = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.folder_fd, self.slot = folder, os.dup(folder)

    def close(self) -> None:
        for descriptor in (self.slot, self.folder_fd):
            if descriptor >= 0:
                os.close(descriptor)
        self.folder_fd = self.slot = -1

    def reclaimable(self, size: int) -> int:
        """Bytes ``make_room(size)`` would delete: they count as free space for a file of ``size``."""
        return min(self.used, max(0, self.used + size - self.quota))

    def make_room(self, size: int) -> None:
        """Delete the oldest files until ``size`` more bytes fit in the quota; NoRoom when even that is not enough."""
        while self.used + size > self.quota and self.files:
            _, oldest, was = self.files.popleft()
            try:
                os.unlink(oldest)
            except FileNotFoundError:
                pass
            except OSError:
                continue  # cannot be deleted (permissions): it still takes its room
            self.used -= was
        if self.used + size > self.quota:
            raise NoRoom(f"{size / 2**20:.1f} MB do not fit archive.max_mb ({self.quota / 2**20:g} MB) even with every "
                         f"deletable file deleted ({self.used / 2**20:.1f} MB remain)")

    def write(self, name: str, chunks: list[bytes], abandoned: Callable[[], bool] = lambda: False) -> Path:
        """``name`` holding ``chunks``, whole or not at all. Raises OSError, NoRoom, or Abandoned between chunks."""
        path, temp = self.path / name, self.path / f"{TEMP_PREFIX}{name}{TEMP_SUFFIX}"
        size = sum(len(chunk) for chunk in chunks)
        self._descriptors()
        self.make_room(size)
        try:
            opened = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the folder was deleted: made again (raises if it cannot be)
            self.path.mkdir(parents=True, exist_ok=True)
            self.close()
            self._descriptors()
            opened = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        os.dup2(opened, self.slot, inheritable=False)  # the file takes the slot
        os.close(opened)
        try:
            try:
                for chunk in chunks:
                    if abandoned():
                        raise Abandoned("stopped before the file was complete")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(self.slot, view):]
                os.fsync(self.slot)
            finally:
                os.dup2(self.folder_fd, self.slot, inheritable=False)  # closes the file
            os.rename(temp, path)
        except BaseException:
            _remove(temp)
            raise
        try:
            os.fsync(self.folder_fd)  # the rename on the disk too (some filesystems cannot: the rename is still atomic)
        except OSError:
            pass
        self.files.append((time.time(), str(path), size))
        self.used += size
        return path


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only or vanished folder: nothing is left there to mislead anyone
