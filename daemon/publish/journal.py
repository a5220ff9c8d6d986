"""The station's records in the journal, followed in order with systemd-python's reader (matched by the catalog's
MESSAGE_IDs, plus systemd's record of the station's unit failing), from a stored position.

Resuming from a position whose record was rotated out of the journal (vacuumed while the broker was down for days)
finds a gap: the records between that position and the oldest one still there are gone. The gap is measured (in
verdicts, when the same station process wrote on both sides of it; frame numbers are consecutive within a process)
and handed to the publisher, which says it once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.publish.messages import UNIT_FAILED_ID
from inspectd.daemon.publish.position import Position
from inspectd.daemon.records import MESSAGE_IDS, Origin, RecordKind, entry_text

STATE_KINDS = (RecordKind.START, RecordKind.STOP, RecordKind.RELOAD, RecordKind.FAULT, RecordKind.DRIFT, RecordKind.DRIFT_OVER,
               RecordKind.PRECISION)
RUN_STARTS = {MESSAGE_IDS[RecordKind.START], MESSAGE_IDS[RecordKind.RELOAD], MESSAGE_IDS[RecordKind.STOP], UNIT_FAILED_ID}
LOOK_BACK = 10_000  # state records read backwards, at most, to find the station's current run


@dataclass(frozen=True)
class Gap:
    after: Position  # the last record published
    resumed_at: datetime | None  # when the oldest record still in the journal was written
    verdicts_lost: int | None  # None: not countable (another boot or station process on the other side)

    def to_json(self) -> dict[str, object]:
        return {"after": self.after.time, "resumed_at": self.resumed_at.isoformat() if self.resumed_at else None,
                "verdicts_lost": self.verdicts_lost, "after_frame": self.after.frame}

    def describe(self) -> str:
        lost = f"{self.verdicts_lost} verdicts" if self.verdicts_lost is not None else "an unknown number of records"
        return (f"records written after {self.after.time} and before {self.resumed_at.isoformat() if self.resumed_at else 'now'} "
                f"were rotated out of the journal before they could be published: {lost} lost")


def open_reader(directory: str | None = None):
    """systemd-python's reader, converting only the time: the other fields stay text (records.Origin reads them), which
    halves its cost per record (UUIDs and dates of fields nobody reads)."""
    try:
        from systemd import journal
    except ImportError:
        raise InspectdError("systemd-python is not installed", fix="apt install python3-systemd (or pip install systemd-python)") from None
    plain = {name: bytes.decode for name in journal.DEFAULT_CONVERTERS}
    plain.update({"__REALTIME_TIMESTAMP": journal.DEFAULT_CONVERTERS["__REALTIME_TIMESTAMP"], "__CURSOR": str,
                  "__MONOTONIC_TIMESTAMP": lambda value: value[0], "COREDUMP": bytes})
    reader = _plain_reader(journal)
    try:
        return reader(path=directory, converters=plain) if directory else reader(converters=plain)
    except OSError as exc:
        raise InspectdError(f"the journal cannot be opened ({exc.strerror or exc})", file=directory,
                            fix="run as a member of the systemd-journal group (the unit's SupplementaryGroups=)") from None


def _plain_reader(journal):
    """systemd-python's Reader whose records are the same dicts, read faster: one dict comprehension decodes every field
    (a station record has about 30) instead of a converter call per field; a field given twice (a list), bytes that
    are not UTF-8 or a core dump take the reader's own way, field by field."""

    class PlainReader(journal.Reader):
        def get_next(self, skip: int = 1) -> dict:
            if not self._next(skip):
                return {}
            entry = self._get_all()
            if not entry:
                return {}
            if "COREDUMP" in entry:
                result = self._convert_entry(entry)
            else:
                try:
                    result = {key: value.decode() for key, value in entry.items()}
                except (AttributeError, ValueError):
                    result = self._convert_entry(entry)
            result["__REALTIME_TIMESTAMP"] = self.converters["__REALTIME_TIMESTAMP"](self._get_realtime())
            result["__MONOTONIC_TIMESTAMP"] = self._get_monotonic()[0]
            result["__CURSOR"] = self._get_cursor()
            return result

    return PlainReader


class StationJournal:
    """A reader of the station's records. ``kinds`` narrows it (the state records alone read backwards quickly)."""

    def __init__(self, unit: str, directory: str | None = None, kinds: tuple[RecordKind, ...] | None = None) -> None:
        self.unit = unit
        self.reader = open_reader(directory)
        for kind in kinds or tuple(MESSAGE_IDS):
            self.reader.add_match(MESSAGE_ID=MESSAGE_IDS[kind])
        self.reader.add_disjunction()
        self.reader.add_match(MESSAGE_ID=UNIT_FAILED_ID, UNIT=unit)
        self.pending: dict | None = None  # a record read while resuming, not yet handed out

    def fileno(self) -> int:
        return self.reader.fileno()

    def process(self) -> None:
        """Acknowledge the journal's wake-up (its fd was readable), so the next select waits again."""
        self.reader.process()

    def next(self) -> dict | None:
        if self.pending is not None:
            entry, self.pending = self.pending, None
            return entry
        return self.reader.get_next() or None

    def start(self, where: str) -> None:
        """Where a first run starts: ``all`` (the oldest record), ``boot`` (this boot's first) or ``now`` (new records only)."""
        self.pending = None
        if where == "all":
            self.reader.seek_head()
        elif where == "boot":
            try:
                self.reader.seek_monotonic(0)  # this boot's first record: the boot id from /proc/sys/kernel/random/boot_id
            except OSError as exc:
                raise InspectdError(f"this boot's id cannot be read ({exc.strerror or exc})", key="first_start",
                                    fix='the unit must not hide /proc/sys (ProcSubset=pid), or set first_start = "all" or "now"') from None
        else:
            self.reader.seek_tail()
            self.reader.get_previous()

    def rewind(self, cursor: str) -> None:
        """Back to the record at ``cursor`` (the first record read this run): it is the next one handed out."""
        self.reader.seek_cursor(cursor)
        self.pending = self.reader.get_next() or None

    def resume(self, position: Position) -> Gap | None:
        """Position the reader just after ``position``'s record; the gap, when that record is no longer in the journal."""
        self.pending = None
        try:
            self.reader.seek_cursor(position.cursor)
        except (OSError, ValueError):  # a cursor this journal cannot parse: nothing of it to resume from
            self.reader.seek_head()
            first = self.reader.get_next() or None
            self.pending = first
            return gap_before(position, first) if first else Gap(position, None, None)
        entry = self.reader.get_next() or None
        if entry is not None and entry.get("__CURSOR") == position.cursor:
            return None  # found: the next record is the first to publish
        self.pending = entry
        return gap_before(position, entry) if entry is not None else Gap(position, None, None)

    def backwards(self, until: str | None) -> Iterator[dict]:
        """Records up to the cursor ``until`` (itself included when it is one of this reader's), or to the end, newest first."""
        if until is None:
            self.reader.seek_tail()
        else:
            self.reader.seek_cursor(until)
        while entry := self.reader.get_previous():
            yield entry


def current_run(unit: str, until: str | None, directory: str | None = None) -> list[dict]:
    """The state records of the station's run at ``until`` (from its last start, reload or stop), oldest first: what a
    follower replays to know the station's state without reading every verdict since."""
    journal = StationJournal(unit, directory, STATE_KINDS)
    found: list[dict] = []
    for entry in journal.backwards(until):
        found.append(entry)
        if str(entry.get("MESSAGE_ID", "")).replace("-", "") in RUN_STARTS or len(found) >= LOOK_BACK:
            break
    return found[::-1]


def gap_before(position: Position, entry: Mapping[str, object]) -> Gap:
    origin = Origin.of(entry)
    lost = None
    frame = entry_text(entry, "INSPECTD_FRAME", False)
    if (frame is not None and frame.isdigit() and position.frame is not None and origin.boot == position.boot
            and origin.pid == position.pid and int(frame) > position.frame):
        lost = int(frame) - position.frame - 1
    return Gap(position, origin.time, lost)
