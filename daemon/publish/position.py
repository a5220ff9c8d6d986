"""Where publishing resumes: the journal cursor of the last record the broker acknowledged (with everything before
it), kept in the publisher's state directory and replaced atomically (a temporary file, fsync, rename), so a crash, a
kill -9 or a power cut leaves either the old position or the new one, never half of one. The folder is not synced after
the rename: a power cut may bring back the previous position, which publishes those records twice, never skips one,
and costs half the syncs.

The publisher hands positions to a PositionWriter, which saves the newest in a thread of its own: an fsync takes
milliseconds (5-10 ms here on a busy disk, more on an SD card, and the unit's idle IO class waits for the disk to be
free), and the publishing loop need not wait for it.

    >>> import tempfile
    >>> store = PositionFile(Path(tempfile.mkdtemp()) / "position.json")
    >>> store.save(Position(cursor="s=1;i=2", boot="b00t", pid=812, frame=7))
    >>> store.load().frame
    7
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from inspectd.daemon.errors import InspectdError

FILE_NAME = "position.json"


@dataclass(frozen=True)
class Position:
    cursor: str  # the journal cursor of the last record acknowledged
    time: str | None = None  # when that record was written (ISO 8601): where a gap starts
    boot: str | None = None  # its boot, process and frame: how many verdicts a gap lost, when the same process wrote on
    pid: int | None = None
    frame: int | None = None
    gap_reported: bool = False  # the gap found resuming from here was published: said once, not again after a restart


class PositionFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Position | None:
        """The stored position; None when there is none yet. An unreadable file is an error (starting over would
        publish again, or skip, what the plant may not expect): the message says to delete it to start afresh."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            known = {spec.name for spec in fields(Position)}
            return Position(**{key: value for key, value in data.items() if key in known})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise InspectdError(f"the publishing position cannot be read ({exc})", file=self.path,
                                fix="delete it to start again as publish.toml's first_start says") from None

    def save(self, position: Position) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(asdict(position), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)


class PositionWriter:
    """Saves the positions handed to it, in a thread of its own. Handing one over first waits for the previous one to be
    written (the loop waits only when the disk is slower than the saves come), so the position on disk is at most one
    behind the newest handed over: what a kill -9 can repeat stays bounded by count however slow the disk. A failed save
    is raised by the next ``offer`` or by ``close``."""

    def __init__(self, store: PositionFile) -> None:
        self.store = store
        self.pending: Position | None = None
        self.offered = 0  # positions handed over
        self.written = 0  # the number of the last one written
        self.closing = False
        self.failure: InspectdError | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._write, name="position-writer", daemon=True)
        self.thread.start()

    def offer(self, position: Position, wait: bool = False) -> None:
        """Hands ``position`` over; with ``wait``, returns once it is on disk."""
        with self.changed:
            self.changed.wait_for(lambda: self.written == self.offered or self.failure is not None)
            self._raise()
            self.pending = position
            self.offered += 1
            self.changed.notify_all()
            if wait:
                self.changed.wait_for(lambda: self.written == self.offered or self.failure is not None)
                self._raise()

    def close(self) -> None:
        """Saves what is pending, then stops."""
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _write(self) -> None:
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.pending is not None or self.closing)
                position, number, self.pending = self.pending, self.offered, None
            if position is None:
                return
            try:
                self.store.save(position)
            except OSError as exc:
                failure = InspectdError(f"the publishing position cannot be saved ({exc.strerror or exc})", file=self.store.path,
                                        fix="the state directory must be writable by the publisher (StateDirectory=)")
            else:
                failure = None
            with self.changed:
                self.written, self.failure = number, failure
                self.changed.notify_all()
            if failure is not None:
                return
