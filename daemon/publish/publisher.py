"""``inspectd publish``'s loop: the station's journal records to the MQTT broker, at least once, in order, and the
figures for Prometheus.

One thread does the work, waiting on the journal's and the broker's file descriptors at once: a new record is
published as soon as journald has it, up to WINDOW messages awaiting the broker's acknowledgement. The position
(the journal cursor of the newest record acknowledged together with all before it) is saved once SAVE_EVERY records
were acknowledged since the last save or SAVE_INTERVAL_S passed, whichever comes first, and when the publisher stops
(by a thread of its own: position.PositionWriter, at most one save behind). After a kill -9 the records acknowledged
since the position on disk and those in flight are published again (the duplicates the idempotency key lets a consumer
drop), never skipped: fewer than 2 x SAVE_EVERY + WINDOW, however fast it was catching up. When the connection breaks,
whatever was in flight is read again from the journal once the broker is back.

The metrics follow the journal's tail with a reader of their own (none when they are not served), so a broker that is
down does not stall them;
``/metrics`` is served by a thread of its own (metrics.MetricsServer).
"""

from __future__ import annotations

import random
import select
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.publish.config import PublishConfig
from inspectd.daemon.publish.journal import Gap, StationJournal, current_run
from inspectd.daemon.publish.messages import (Message, StationState, Topics, dumps, gap_message, home_assistant, record_kind,
                                              record_message, state_message)
from inspectd.daemon.publish.metrics import Metrics, MetricsServer
from inspectd.daemon.publish.mqtt import Link, LinkError
from inspectd.daemon.publish.position import FILE_NAME, Position, PositionFile, PositionWriter
from inspectd.daemon.records import Origin, RecordError, RecordKind, entry_text

WINDOW = 200  # messages awaiting the broker's acknowledgement, at most
SAVE_INTERVAL_S = 1.0  # the position is saved this often at least while records are acknowledged ...
SAVE_EVERY = 100  # ... and after this many: what a kill -9 can make publish twice, beside what was in flight
STABLE_S = 30.0  # a connection that lasted this long resets the backoff
REPEAT_S = 300.0  # the same connection failure is said again this often, not at every retry
READ_BATCH = 500  # records read per turn for the metrics, before the loop looks at the broker again
# journald wakes its readers at most every 250 ms (its post-change timer); a record is in the mmap'ed file at once, so the
# loop also looks every POLL_S while records come: a record reaches the broker milliseconds after it is written, not a
# quarter second. When none came for ACTIVE_S, each look that finds nothing doubles the wait, up to IDLE_POLL_S
# (journald's own wake-up then comes first): an idle station costs the publisher a few wake-ups a second, not fifty,
# and a station that pauses a moment (a slow frame) keeps its records' delay.
POLL_S = 0.02
ACTIVE_S = 1.0
IDLE_POLL_S = 0.25
GAP = object()  # the tag of the gap message


def say(line: str) -> None:
    print(f"inspectd publish: {line}", file=sys.stderr, flush=True)


class Notifier:
    """sd_notify, when systemd started us (Type=notify, WatchdogSec=)."""

    def __init__(self) -> None:
        try:
            from systemd import daemon
        except ImportError:
            daemon = None
        self.daemon = daemon
        self.last = 0.0

    def __call__(self, *states: str) -> None:
        if self.daemon is not None:
            self.daemon.notify("\n".join(states))

    def alive(self, status: str) -> None:
        now = time.monotonic()
        if now - self.last >= 2.0:
            self.last = now
            self("WATCHDOG=1", f"STATUS={status}")


class Publisher:
    def __init__(self, config: PublishConfig, state_dir: Path, directory: str | None = None) -> None:
        self.config = config
        self.station = config.station_id
        self.unit = config.unit
        self.directory = directory  # a folder of journal files instead of this machine's journal (tests, benchmarks)
        self.topics = Topics(config.mqtt.topic_prefix if config.mqtt else "inspectd", self.station)
        self.metrics = Metrics(self.station, self.unit)
        self.positions = PositionFile(Path(state_dir) / FILE_NAME)
        self.stop = threading.Event()
        self.notify = Notifier()
        # publishing
        self.acked: Position | None = None  # the newest record acknowledged with all before it
        self.saved: Position | None = None  # the newest handed to the writer
        self.saved_at = 0.0
        self.unsaved = 0  # records acknowledged since
        self.writer: PositionWriter | None = None
        self.first_read: str | None = None  # the cursor of the first record read this run: where a rewind goes without a position
        self.gap: Gap | None = None  # found when resuming, said once the broker acknowledges it
        self.state = StationState()
        self.last_frame: tuple[str | None, int | None, int | None] = (None, None, None)  # boot, pid, frame of the last verdict read
        self.link: Link | None = None
        self.next_attempt = 0.0
        self.backoff = 1.0
        self.connected_at = 0.0
        self.said: dict[str, float] = {}  # each way of failing said since the last connection, and when
        self.down_since: float | None = None  # when the connection was lost (a cut, the broker's outage)
        self.caught_up = False
        self.poll_s = POLL_S  # the wait for the journal in this turn: POLL_S while records come, doubling while none does
        self.last_read = 0.0  # when the last record was read

    def request_stop(self, *_: object) -> None:
        self.stop.set()

    # ------------------------------------------------------------------ the run

    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        mqtt = self.config.mqtt
        password = mqtt.password() if mqtt else None
        tail = StationJournal(self.unit, self.directory) if self.config.metrics.enabled else None  # nobody reads them otherwise
        if tail is not None:
            tail.start("now")
            self.metrics.replay(current_run(self.unit, None, self.directory))
        journal = StationJournal(self.unit, self.directory) if mqtt else None
        if journal is not None:
            self.start_publishing(journal)
        server = self.serve_metrics()
        self.notify("READY=1", f"STATUS=following the journal of {self.unit} as station {self.station}")
        say(f"station {self.station}: following {self.unit}'s records" + (f", publishing to {Link(mqtt, self.station, self.offline(), None).where}"
                                                                          if mqtt else "") +
            (f", metrics on http://{self.config.metrics.listen}/metrics" if server else ""))
        self.writer = PositionWriter(self.positions)
        try:
            while not self.stop.is_set():
                self.turn(journal, tail, password)
        finally:
            if self.link is not None:
                self.link.close(goodbye=self.offline(), before=self.take_acknowledgements)
            self.save(force=True)
            self.writer.close()
            if server is not None:
                server.close()
        return 0

    def serve_metrics(self) -> MetricsServer | None:
        if not self.config.metrics.enabled:
            return None
        try:
            server = MetricsServer(self.metrics, self.config.metrics.address)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {self.config.metrics.listen} ({exc.strerror or exc})", file=self.config.file or None,
                              key="metrics.listen", fix="choose a free port and an address of this machine, or enabled = false") from None
        server.start()
        return server

    def start_publishing(self, journal: StationJournal) -> None:
        position = self.positions.load()
        self.acked = self.saved = position
        if position is None:
            journal.start(self.config.first_start)
            if self.config.first_start == "now":
                self.replay_state(current_run(self.unit, None, self.directory))
            return
        self.replay_state(current_run(self.unit, position.cursor, self.directory))
        self.last_frame = (position.boot, position.pid, position.frame)
        say(f"resuming after the record of {position.time or 'unknown time'}" + (f" (boot {position.boot[:8]})" if position.boot else ""))
        gap = journal.resume(position)
        if gap is not None and position.gap_reported:
            say(f"{gap.describe()} (already published)")
        elif gap is not None:
            say(gap.describe())
            self.gap = gap

    def replay_state(self, entries: list[Mapping[str, object]]) -> None:
        for entry in entries:
            self.state.update(entry, self.unit)

    def turn(self, journal: StationJournal | None, tail: StationJournal | None, password: str | None) -> None:
        """One turn: connect if due, wait for the journal or the broker, read, publish, take acknowledgements, save."""
        now = time.monotonic()
        if journal is not None and self.link is None and now >= self.next_attempt:
            self.connect(journal, password)
        link = self.link
        readers = [reader.fileno() for reader in (tail, journal) if reader is not None]
        # None once paho closed the socket (a failed write in the last turn), though the loss is handled below only
        link_fd = link.fileno() if link is not None else None
        link_fds = [link_fd] if link_fd is not None else []
        busy = link is not None and link.connected and not self.caught_up and link.in_flight() < WINDOW
        timeout = 0.0 if busy else max(0.0, min(self.poll_s, self.next_attempt - now if journal is not None and link is None else self.poll_s))
        readable, _, _ = select.select(readers + link_fds, link_fds if link_fds and link.wants_write() else [], [], timeout)
        if tail is not None and tail.fileno() in readable:
            tail.process()
        if journal is not None:
            if journal.fileno() in readable:
                journal.process()
            self.caught_up = False  # look again: the record may be there before journald says so
        read = self.follow(tail) if tail is not None else 0
        if link is not None:
            link.step(0.0, readable=link_fd in readable)
            self.take_acknowledgements(link)
            if link.lost is not None:
                self.disconnected(journal, link.lost)
            elif link.connected:
                read += self.publish_records(journal, link)
                link.step(0.0, readable=False)  # send what was just queued
        if read:
            self.last_read = now
        self.poll_s = POLL_S if now - self.last_read < ACTIVE_S else min(self.poll_s * 2, IDLE_POLL_S)
        self.save()
        self.notify.alive(self.status())

    def follow(self, tail: StationJournal) -> int:
        """The new records into the metrics; how many."""
        for count in range(READ_BATCH):
            entry = tail.next()
            if entry is None:
                return count
            self.metrics.observe(entry)
        return READ_BATCH

    # ------------------------------------------------------------------ the broker

    def offline(self) -> Message:
        """The retained ``offline``: the connection's last will, and the goodbye of a clean stop."""
        return Message(self.topics.availability, b"offline", retain=True)

    def connect(self, journal: StationJournal, password: str | None) -> None:
        assert self.config.mqtt is not None
        link = Link(self.config.mqtt, self.station, self.offline(), password)
        try:
            link.connect()
        except LinkError as failure:
            self.failed(failure)
            return
        self.link, self.connected_at = link, time.monotonic()
        self.metrics.connected = True
        self.said.clear()
        if self.down_since is None:
            say(f"connected to {link.where}")
        else:
            since = f"after the record of {self.acked.time}" if self.acked is not None and self.acked.time else "where it stopped"
            say(f"connected to {link.where} again after {self.connected_at - self.down_since:.0f} s; publishing resumes {since}")
            self.down_since = None
        # The birth: availability, the current state and the discovery, retained, on every connection.
        link.publish(Message(self.topics.availability, b"online", retain=True))
        link.publish(state_message(self.state, self.topics))
        if self.config.mqtt.home_assistant:
            for message in home_assistant(self.topics):
                link.publish(message)
        if self.gap is not None:
            link.publish(gap_message(self.topics, self.gap.to_json()), GAP)

    def failed(self, failure: LinkError) -> None:
        with self.metrics.lock:
            self.metrics.connection_failures += 1
        now = time.monotonic()
        delay = self.backoff * random.uniform(1.0, 1.2)
        said_at = self.said.get(str(failure))
        if said_at is None or now - said_at >= REPEAT_S:  # attempts that alternate between two failures say each once
            say(f"{failure}; retrying in {delay:.0f} s" + (" (said again every 5 minutes while it lasts)" if said_at is None else ""))
            self.said[str(failure)] = now
        self.next_attempt = now + delay
        self.backoff = min(self.backoff * 2, self.config.mqtt.retry_max_s if self.config.mqtt else 60.0)

    def disconnected(self, journal: StationJournal | None, failure: LinkError) -> None:
        """The connection broke: what was in flight is read again once connected."""
        assert self.link is not None
        if time.monotonic() - self.connected_at >= STABLE_S:
            self.backoff = 1.0
        self.link.close()
        self.link = None
        self.metrics.connected = False
        self.down_since = time.monotonic()
        self.failed(failure)
        if journal is not None:
            self.rewind(journal)

    def rewind(self, journal: StationJournal) -> None:
        self.caught_up = False
        if self.acked is not None:
            gap = journal.resume(self.acked)  # gone only if rotated away while the broker was down
            if gap is not None and not self.acked.gap_reported and self.gap is None:
                say(gap.describe())
                self.gap = gap
            self.last_frame = (self.acked.boot, self.acked.pid, self.acked.frame)
        elif self.first_read is not None:
            journal.rewind(self.first_read)
            self.last_frame = (None, None, None)

    def publish_records(self, journal: StationJournal | None, link: Link) -> int:
        """Publishes the next records, up to the window; how many."""
        assert journal is not None
        count = 0
        while link.in_flight() < WINDOW:
            entry = journal.next()
            if entry is None:
                self.caught_up = True
                return count
            count += 1
            if self.first_read is None:
                self.first_read = str(entry["__CURSOR"])
            origin = Origin.of(entry)
            message = self.message(entry, origin)
            link.publish(message, (self.position_of(entry, origin), message.kind))
            if self.state.update(entry, self.unit):
                link.publish(state_message(self.state, self.topics))
        return count

    def message(self, entry: Mapping[str, object], origin: Origin) -> Message:
        try:
            return record_message(entry, self.topics, origin)
        except (RecordError, KeyError) as problem:  # published as what it is, never skipped in silence
            body = {"kind": "malformed", "station": self.station, "error": str(problem), "message": entry_text(entry, "MESSAGE", False),
                    "id": f"{self.station}/{origin.boot}/{origin.pid}/malformed@{origin.monotonic_us}", **origin.to_json()}
            return Message(self.topics.event, dumps(body), kind="malformed")

    def position_of(self, entry: Mapping[str, object], origin: Origin) -> Position:
        boot, pid, frame = self.last_frame
        if record_kind(entry, self.unit) == RecordKind.VERDICT:
            number = entry_text(entry, "INSPECTD_FRAME", False)
            frame = int(number) if number and number.isdigit() else None
            self.last_frame = boot, pid, frame = origin.boot, origin.pid, frame
        elif (origin.boot, origin.pid) != (boot, pid):
            boot, pid, frame = origin.boot, origin.pid, None
        return Position(cursor=str(entry["__CURSOR"]), time=origin.time.isoformat() if origin.time else None, boot=boot, pid=pid,
                        frame=frame)

    def take_acknowledgements(self, link: Link) -> None:
        for tag in link.acknowledged():
            if isinstance(tag, tuple):
                self.acked, kind = tag
                self.unsaved += 1
                if self.unsaved >= SAVE_EVERY:
                    self.save()
                with self.metrics.lock:
                    self.metrics.published[kind or "other"] += 1
                    if self.acked.time:
                        self.metrics.last_published = datetime.fromisoformat(self.acked.time).timestamp()
            elif tag is GAP and self.gap is not None:
                with self.metrics.lock:
                    self.metrics.gaps += 1
                    self.metrics.verdicts_lost += self.gap.verdicts_lost or 0
                self.gap = None
                if self.acked is not None:
                    self.acked = replace(self.acked, gap_reported=True)
                    self.save(force=True, wait=True)  # on disk before going on: the gap is said once

    def save(self, force: bool = False, wait: bool = False) -> None:
        if self.acked is None or self.acked == self.saved or self.writer is None:
            return
        now = time.monotonic()
        if not force and self.unsaved < SAVE_EVERY and now - self.saved_at < SAVE_INTERVAL_S:
            return
        self.writer.offer(self.acked, wait=wait)
        self.saved, self.saved_at, self.unsaved = self.acked, now, 0

    def status(self) -> str:
        link = self.link
        where = link.where if link is not None else "the broker"
        connection = f"connected to {where}" if link is not None and link.connected else f"not connected to {where}"
        published = sum(self.metrics.published.values())
        return f"{connection}; {published} records published; state {self.state.state}"
