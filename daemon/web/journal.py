"""The page as a follower of the station's journal (systemd-python's reader): the shift so far, kept up to date.

At start, and again when a shift begins, the follower reads:

1. backwards from the shift's start, the station's sparse records (start, stop, faults, reloads, drift:
   never the verdicts) until the station's last start or stop: the state the shift begins in;
2. forwards from the shift's start, everything: the shift's counts, then each new record as it comes
   (journald's inotify descriptor on the event loop, and a poll every POLL_S in case a change is missed).

Reading is done in slices of SLICE records on the event loop, so a long shift read at start never keeps
a page from being served. The records are folded by ``shift.Shift``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.records import MESSAGE_IDS, SYSLOG_IDENTIFIER, RecordKind
from inspectd.daemon.web.shift import Normal, Shift, stamp

SLICE = 2000  # records read in one turn of the event loop
POLL_S = 0.5
STATE_RECORDS_MAX = 20_000  # sparse records read back for the state the shift begins in
KEPT_FIELDS = ("INSPECTD_", "MESSAGE", "PRIORITY", "__REALTIME_TIMESTAMP", "_BOOT_ID")

log = logging.getLogger("inspectd.web")


def shift_start(now: datetime, shifts: list[str]) -> datetime:
    """The latest of the day's shift start times (HH:MM) at or before ``now``."""
    starts = []
    for day in (now.date() - timedelta(days=1), now.date()):
        for text in shifts:
            hour, minute = map(int, text.split(":"))
            starts.append(datetime(day.year, day.month, day.day, hour, minute))
    return max(start for start in starts if start <= now)


def open_reader(directory: str):
    try:
        from systemd import journal
    except ImportError:
        raise InspectdError("systemd-python is not installed", fix="apt install python3-systemd (or pip install systemd-python)") from None
    if directory and not Path(directory).is_dir():
        raise InspectdError("not a folder of journal files", file=directory, key="journal_directory",
                            fix="the folder journalctl -D would read, or \"\" for this machine's journal")
    reader = journal.Reader(path=directory) if directory else journal.Reader()
    reader.add_match(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    return reader


def kept(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if key.startswith(KEPT_FIELDS)}


class Follower:
    """``changed`` is called after each slice that added records."""

    def __init__(self, directory: str, shifts: list[str], normal: Normal | None, drift_window: int,
                 changed: Callable[[], None], now: Callable[[], datetime] = datetime.now) -> None:
        self.directory, self.shifts, self.normal, self.drift_window = directory, shifts, normal, drift_window
        self.changed, self.now = changed, now
        self.reader = None
        self.shift = Shift(start=shift_start(now(), shifts), normal=normal, drift_window=drift_window)
        self.caught_up = False  # the shift so far has been read
        self.read_so_far = 0
        self.problem = ""

    def open(self) -> None:
        """Reads the state the shift begins in; the shift itself is read by ``step`` calls."""
        start = shift_start(self.now(), self.shifts)
        self.shift = Shift(start=start, normal=self.normal, drift_window=self.drift_window)
        self.caught_up, self.read_so_far = False, 0
        if self.reader is not None:
            self.reader.close()
        self.reader = open_reader(self.directory)
        for entry in self._state_before(start):
            self.shift.add(entry)
        self.reader.seek_realtime(start)

    def _state_before(self, start: datetime) -> list[dict]:
        reader = open_reader(self.directory)
        try:
            for kind, message_id in MESSAGE_IDS.items():
                if kind is not RecordKind.VERDICT:
                    reader.add_match(MESSAGE_ID=message_id)
            reader.seek_realtime(start)
            found: list[dict] = []
            while len(found) < STATE_RECORDS_MAX:
                entry = reader.get_previous()
                if not entry:
                    break
                when = stamp(entry)
                if when is None or when >= start:
                    continue
                found.append(kept(entry))
                message_id = str(entry.get("MESSAGE_ID", "")).replace("-", "")
                real_start = message_id == MESSAGE_IDS[RecordKind.START] and not entry.get("INSPECTD_RECOVERED")
                if real_start or message_id == MESSAGE_IDS[RecordKind.STOP]:
                    break
            return list(reversed(found))
        finally:
            reader.close()

    def fileno(self) -> int:
        assert self.reader is not None
        return self.reader.fileno()

    def step(self) -> bool:
        """Reads up to SLICE new records; True when there may be more right away."""
        if shift_start(self.now(), self.shifts) != self.shift.start:
            self.open()  # a new shift: counted from its start, the station's state carried by its records
        assert self.reader is not None
        self.reader.process()
        added = 0
        while added < SLICE:
            entry = self.reader.get_next()
            if not entry:
                break
            self.shift.add(kept(entry))
            added += 1
        self.read_so_far += added
        if added < SLICE:
            self.caught_up = True
        if added:
            self.changed()
        return added == SLICE

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class ImageRecords:
    """The verdict record that names an archived file (INSPECTD_IMAGE), looked up in the journal: the gallery's score and
    time for frames older than the shift. One reader, used from one thread at a time (the caller's executor)."""

    def __init__(self, directory: str, archive: str) -> None:
        self.directory, self.archive = directory, archive
        self.cache: dict[str, dict | None] = {}
        self.reader = None

    def find(self, name: str) -> dict | None:
        if name in self.cache:
            return self.cache[name]
        if self.reader is None:
            self.reader = open_reader(self.directory)
        reader = self.reader
        reader.flush_matches()
        reader.add_match(INSPECTD_IMAGE=str(Path(self.archive) / name))  # as the archive names it
        reader.seek_tail()
        entry = reader.get_previous()
        found = kept(entry) if entry else None
        if found is not None:  # a record not found may come later: asked again
            if len(self.cache) > 5000:
                self.cache.clear()
            self.cache[name] = found
        return found
