"""Files the station reads whole, and resources it must hold alone.

``read_small_file``: a configuration or metadata file is read only when it is a regular file
no larger than a limit, judged on what was opened (a FIFO swapped in after a check must not
block the open, ``/dev/zero`` must not be read until memory runs out).

``Claim``: an exclusive lock (``flock``) on a folder, taken without blocking; when another
process holds it, the error says which (its PID and command line, from ``/proc/locks``).
The kernel drops the lock when the process ends, however it ends: nothing stale is left.

    >>> claim = Claim.take("/srv/parts", what="the watched folder")   # doctest: +SKIP
    >>> claim.release()                                                # doctest: +SKIP
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from inspectd.daemon.errors import InspectdError


class FileRefused(ValueError):
    """A file that is not read: not a regular file, or larger than the limit. The text says which."""


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for an error line."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a plain file"


def read_small_file(path: str | os.PathLike, limit: int, *, dir_fd: int | None = None) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes. Raises FileRefused, or OSError (absent, no
    permission). Opened without blocking and judged by what was opened; never reads more than ``limit`` + 1 bytes."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    with open(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise FileRefused(f"is {_size(info.st_size)}, more than such a file can be ({_size(limit)} at most)")
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew while it was read
        raise FileRefused(f"is more than {_size(limit)}, more than such a file can be")
    return data


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MB" if count >= 2**20 else f"{count} bytes"


class Held(Exception):
    """The resource is held by another process; the text names it."""


class Claim:
    """An exclusive ``flock`` on an open folder (or file), released by ``release`` or when the process ends."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor

    @classmethod
    def take(cls, path: str | os.PathLike, what: str, *, shared: bool = False, descriptor: int | None = None) -> Claim:
        """Locks ``path`` (or the ``descriptor`` already open on it, which the claim then owns). Raises Held naming the
        holder; OSError when the path cannot be opened. ``shared``: readers that exclude only an exclusive holder."""
        if descriptor is None:
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            info = os.fstat(descriptor)
            os.close(descriptor)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise Held(f"{what} {os.fspath(path)} is in use by {holder(info)}") from None
        return cls(descriptor)

    def release(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)  # closing the last descriptor drops the lock
            self.descriptor = -1


def lock_holders(info: os.stat_result) -> list[int]:
    """The PIDs holding a lock (shared or exclusive) on the file ``info`` describes, from /proc/locks."""
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        fields = line.split()
        if "->" not in fields and len(fields) >= 6 and fields[5] == device and fields[4].isdigit():
            pids.append(int(fields[4]))
    return list(dict.fromkeys(pids))


def holder(info: os.stat_result) -> str:
    """Who holds a lock on the file ``info`` describes: "PID 1234 (inspectd run --config ...)"."""
    pids = lock_holders(info)
    if not pids:
        return "another process (not visible from here)"
    return ", ".join(f"PID {pid} ({process_command(pid)})" for pid in pids)


def process_command(pid: int) -> str:
    """A process's command line, for messages; "?" when it cannot be read."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    text = " ".join(word.decode("utf-8", "backslashreplace") for word in words)
    return text[:200] or "?"


def output_folder(path: str | os.PathLike, *, key: str) -> Path:
    """A folder a command writes into, made when absent. InspectdError in one line, naming ``key`` (the option that
    chose it), when it is not a folder or cannot be written (a file, /proc, a read-only disk, no permission)."""
    folder = Path(path)
    fix = "choose a folder on a disk this user can write"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InspectdError("is a file, not a folder", file=folder, key=key, fix=fix) from None
    except OSError as exc:
        raise InspectdError(f"cannot be made ({exc.strerror or exc})", file=folder, key=key, fix=fix) from None
    try:  # only a write proves a folder writable (root passes every permission check; /proc refuses files)
        probe = os.open(folder / f".inspectd-probe-{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(probe)
        os.unlink(folder / f".inspectd-probe-{os.getpid()}")
    except OSError as exc:
        raise InspectdError(f"cannot be written ({exc.strerror or exc})", file=folder, key=key, fix=fix) from None
    return folder
