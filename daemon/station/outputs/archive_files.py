"""The archive's folder: a folder of the station's own, in which it deletes and overwrites only
files it wrote. A file appears whole or not at all.

Owned: the folder holds a marker file (MARKER) that the station wrote when it took the folder:
when the folder was empty, or held nothing but files named as the archive names them
(``YYYYmmdd-HHMMSS-<frame>-<verdict>[-heatmap].<suffix>``, an archive of an older version). A
folder holding anything else is not taken: ``OwnershipError`` names what is there (exit 78 at
start). In a folder it owns, the station counts against the quota, and deletes (oldest first),
only regular files named as its own; anything else put there later is left alone and not
counted.

Every operation goes through descriptors opened at ``take``, never through the path again: a
symlink that replaces the folder, or its parent, while the station runs is never followed. A
folder deleted while the station runs is made again at the next write, in the same parent
folder (the descriptor kept on it), and taken again by the same rule.

The folder is locked (``flock``) from ``take`` to ``close``: a second station configured with
the same archive is refused, naming the process that holds it.

A file is written under a temporary name in the folder itself (``.inspectd-<name>.tmp``),
flushed to the disk (fsync), renamed to its name (atomic within a filesystem), and the folder
is flushed: a full disk, a kill -9 or a power cut leaves no partial file under a real name.
Room is made before a file is written, so the quota holds at every moment, temporary file
included. ``take`` deletes the temporary files a killed run left.

The folder holds its descriptors from ``take`` to ``close``, whatever it writes: the folder's
own (to flush it), its parent's, the lock's, and a slot each file takes while it is written, so
a count of the daemon's descriptors (bench/soak.py's leak check) sees no coming and going.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from inspectd.daemon.files import Claim, Held
from inspectd.daemon.station.outputs.png import Abandoned

TEMP_PREFIX, TEMP_SUFFIX = ".inspectd-", ".tmp"
MARKER = ".inspectd-archive"
MARKER_TEXT = ("This folder is an inspectd reject archive. inspectd deletes the oldest of its own files here\n"
               "(YYYYmmdd-HHMMSS-<frame>-<verdict>.png, -heatmap.jpg) to keep within archive.max_mb, and nothing else.\n")
OWN_NAME = re.compile(r"\d{8}-\d{6}-\d{8,}-(pass|reject)(-heatmap)?\.[a-z]{3,4}")
SHOWN = 3  # foreign entries named in an error


class NoRoom(Exception):
    """The quota cannot hold the file even with every deletable file deleted."""


class OwnershipError(Exception):
    """The folder is not the station's to write in (it holds other files, it is a symlink, another station has it)."""


def is_own_name(name: str) -> bool:
    return OWN_NAME.fullmatch(name) is not None or is_temporary(name)


def is_temporary(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX) and name != MARKER


def foreign_entries(folder: Path) -> list[str]:
    """What in an existing folder without the marker keeps the station from taking it (its own names are not)."""
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if not (is_own_name(entry.name) and entry.is_file(follow_symlinks=False)))


def judge(folder: Path) -> str | None:
    """Why the station would not take ``folder`` (``inspectd check``, nothing created); None when it would."""
    folder = Path(os.path.realpath(folder))
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return f"'{folder}' is a symlink; the archive must be a folder of its own, never followed through a link"
    if not stat.S_ISDIR(info.st_mode):
        return f"'{folder}' is not a folder"
    if os.path.lexists(folder / MARKER):
        return None
    foreign = foreign_entries(folder)
    return _not_own(folder, foreign) if foreign else None


def _not_own(folder: Path, foreign: list[str]) -> str:
    shown = ", ".join(repr(name) for name in foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
    return (f"'{folder}' holds {len(foreign)} entries that are not the station's ({shown}): the archive deletes files to keep "
            "within its quota, so it must be a folder of its own")


class ArchiveFolder:
    """
        >>> folder = ArchiveFolder(Path("/var/lib/inspectd/rejects"), quota=500 * 2**20)   # doctest: +SKIP
        >>> folder.take()       # made or adopted, locked, stale temporary files deleted, its files counted   # doctest: +SKIP
        >>> folder.write("20250101-120000-00000412-reject.png", [b"..."])        # doctest: +SKIP
    """

    def __init__(self, path: Path, quota: int) -> None:
        self.path, self.quota = Path(os.path.realpath(path)), quota  # a link to the folder is followed once, here
        self.files: deque[tuple[float, str, int, int]] = deque()  # (modified, name, bytes, inode), oldest first
        self.used = 0  # bytes of the station's own files
        self.parent_fd = self.folder_fd = self.slot = -1
        self.claim: Claim | None = None

    def take(self) -> int:
        """Makes or adopts the folder and locks it; deletes the temporary files a killed run left; counts the station's
        files. Returns how many temporary files went. Raises OwnershipError, or OSError when the folder cannot be made."""
        if self.parent_fd < 0:
            self.parent_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if self.folder_fd < 0:
            self._open_folder()
        removed, found = 0, []
        with os.scandir(self.folder_fd) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    if is_temporary(entry.name):
                        os.unlink(entry.name, dir_fd=self.folder_fd)
                        removed += 1
                    elif OWN_NAME.fullmatch(entry.name):
                        found.append((info.st_mtime, entry.name, info.st_size, info.st_ino))
                except OSError:
                    continue  # gone meanwhile, or cannot be deleted: its write will say
        self.files = deque(sorted(found))
        self.used = sum(size for _, _, size, _ in found)
        return removed

    def _open_folder(self) -> None:
        """The folder's descriptor, made (in the parent kept open) when absent; adopted or refused; then locked."""
        name = self.path.name
        try:
            folder = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.parent_fd)
        except FileNotFoundError:
            try:
                os.mkdir(name, 0o750, dir_fd=self.parent_fd)
            except FileExistsError:
                pass
            folder = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.parent_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                kind = "a symlink" if os.path.islink(self.path) else "not a folder"
                raise OwnershipError(f"'{self.path}' is {kind} now; the archive writes only into a folder of its own, never "
                                     "through a link") from None
            raise
        try:
            self._adopt(folder)
            claim = Claim.take(self.path, "the archive folder", descriptor=os.dup(folder))
        except Held as held:
            os.close(folder)
            raise OwnershipError(f"{held}: one station per archive folder") from None
        except BaseException:
            os.close(folder)
            raise
        self.folder_fd, self.slot, self.claim = folder, os.dup(folder), claim

    def _adopt(self, folder: int) -> None:
        try:
            os.stat(MARKER, dir_fd=folder, follow_symlinks=False)
            return
        except FileNotFoundError:
            pass
        with os.scandir(folder) as entries:
            foreign = sorted(entry.name for entry in entries if not (is_own_name(entry.name) and entry.is_file(follow_symlinks=False)))
        if foreign:
            raise OwnershipError(_not_own(self.path, foreign))
        marker = os.open(MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=folder)
        try:
            os.write(marker, MARKER_TEXT.encode())
        finally:
            os.close(marker)

    def close(self) -> None:
        """The folder's descriptors and its lock (the parent's stays: a folder taken again is made in the same place)."""
        for descriptor in (self.slot, self.folder_fd):
            if descriptor >= 0:
                os.close(descriptor)
        self.folder_fd = self.slot = -1
        if self.claim is not None:
            self.claim.release()
            self.claim = None

    def release(self) -> None:
        self.close()
        if self.parent_fd >= 0:
            os.close(self.parent_fd)
            self.parent_fd = -1

    def reclaimable(self, size: int) -> int:
        """Bytes ``make_room(size)`` would delete: they count as free space for a file of ``size``."""
        return min(self.used, max(0, self.used + size - self.quota))

    def make_room(self, size: int) -> None:
        """Delete the oldest of the station's files until ``size`` more bytes fit in the quota; NoRoom when even that is
        not enough. A file replaced since it was counted (another inode) is not the station's any more: left alone."""
        while self.used + size > self.quota and self.files:
            _, oldest, was, inode = self.files.popleft()
            self.used -= was
            try:
                if os.stat(oldest, dir_fd=self.folder_fd, follow_symlinks=False).st_ino == inode:
                    os.unlink(oldest, dir_fd=self.folder_fd)
            except FileNotFoundError:
                pass
            except OSError:
                self.used += was  # cannot be deleted (permissions): it still takes its room
                continue
        if self.used + size > self.quota:
            raise NoRoom(f"{size / 2**20:.1f} MB do not fit archive.max_mb ({self.quota / 2**20:g} MB) even with every "
                         f"deletable file deleted ({self.used / 2**20:.1f} MB remain)")

    def write(self, name: str, chunks: list[bytes], abandoned: Callable[[], bool] = lambda: False) -> Path:
        """``name`` holding ``chunks``, whole or not at all. Raises OSError, NoRoom, OwnershipError, or Abandoned between chunks."""
        temp = f"{TEMP_PREFIX}{name}{TEMP_SUFFIX}"
        size = sum(len(chunk) for chunk in chunks)
        if self.folder_fd < 0:
            self.take()
        self.make_room(size)
        try:
            opened = self._create(temp)
        except FileNotFoundError:  # the folder was deleted: made again where it was (raises if it cannot be)
            self.close()
            self.take()
            opened = self._create(temp)
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
                inode = os.fstat(self.slot).st_ino
            finally:
                os.dup2(self.folder_fd, self.slot, inheritable=False)  # closes the file
            os.rename(temp, name, src_dir_fd=self.folder_fd, dst_dir_fd=self.folder_fd)
        except BaseException:
            _remove(temp, self.folder_fd)
            raise
        try:
            os.fsync(self.folder_fd)  # the rename on the disk too (some filesystems cannot: the rename is still atomic)
        except OSError:
            pass
        self.files.append((time.time(), name, size, inode))
        self.used += size
        return self.path / name


    def _create(self, temp: str) -> int:
        """A new file: whatever had its name is unlinked first, so nothing is ever written into a file that was there
        (a link to another file put under the name)."""
        try:
            os.unlink(temp, dir_fd=self.folder_fd)
        except FileNotFoundError:
            pass
        return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self.folder_fd)


def check_ownership(folder: Path) -> None:
    """OwnershipError when the station could not take ``folder`` as it is now (nothing created or changed)."""
    problem = judge(folder)
    if problem:
        raise OwnershipError(problem)


def _remove(name: str, folder: int) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except OSError:
        pass  # a read-only or vanished folder: nothing is left there to mislead anyone


__all__ = ["ArchiveFolder", "Held", "MARKER", "NoRoom", "OwnershipError", "TEMP_PREFIX", "TEMP_SUFFIX", "check_ownership", "is_own_name",
           "judge"]
