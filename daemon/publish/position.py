"""Where publishing resumes: the journal cursor of the last record the broker acknowledged (with everything before
it), kept in the publisher's state directory and replaced atomically (a temporary file, fsync, rename), so a crash, a
kill -9 or a power cut leaves either the old position or the new one, never half of one. The folder is not synced after
the rename: a power cut may bring back the previous position, which publishes a second of records twice, never skips
one, and costs half the syncs (one a second on an SD card).

    >>> import tempfile
    >>> store = PositionFile(Path(tempfile.mkdtemp()) / "position.json")
    >>> store.save(Position(cursor="s=1;i=2", boot="b00t", pid=812, frame=7))
    >>> store.load().frame
    7
"""

from __future__ import annotations

import json
import os
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
