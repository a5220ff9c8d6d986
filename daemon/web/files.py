"""Reading a file the page serves, from a folder it may not leave.

A name is served only when it matches the pattern of the files that folder holds (no ``/``, so no
``..`` and no subfolder), is opened relative to the folder's own descriptor with O_NOFOLLOW (a symlink
planted under a valid name is refused, not followed), and is a regular file of bounded size.

    >>> read_in(Path("/etc"), "../passwd", re.compile(r"[a-z]+\\.png"))
    Traceback (most recent call last):
    ...
    inspectd.daemon.web.files.Refused: '../passwd' is not a file this folder holds
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

MAX_BYTES = 64 * 1024 * 1024


class Refused(Exception):
    """The name is not one the page serves from that folder (a 404 to the browser: nothing said about why)."""


def read_in(folder: Path, name: str, pattern: re.Pattern[str]) -> bytes:
    if not pattern.fullmatch(name) or "/" in name or name in (".", ".."):
        raise Refused(f"{name!r} is not a file this folder holds")
    try:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"{folder}: {exc.strerror}") from None
    try:
        try:
            descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=directory)
        except OSError as exc:  # ELOOP: a symlink; ENOENT: gone (the tap moved on, the quota deleted it)
            raise Refused(f"{name!r}: {exc.strerror}") from None
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:  # a folder, a FIFO, a device: never read
            os.close(descriptor)
            raise Refused(f"{name!r} is not a regular file of at most {MAX_BYTES} bytes")
        with os.fdopen(descriptor, "rb") as file:
            return file.read(MAX_BYTES + 1)[:MAX_BYTES]
    finally:
        os.close(directory)
