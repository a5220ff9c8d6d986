"""The station page's HTTP server (tornado): one page, its state as server-sent events, and the pictures.

Every route is a GET (anything else: 405); nothing a request says changes the station or a file. Routes:

    /                       the page (static/index.html; its script and style under /static/)
    /events                 server-sent events: the state below, at most every PUSH_S and at least every HEARTBEAT_S
    /api/state              the same state, once, as JSON
    /api/gallery            archived frames, newest first (?verdict=reject|pass|all&before=NAME), with their records
    /live/NAME              a file of the live tap (livetap.FILE_NAME)
    /archive/NAME           an archived frame or heatmap picture (gallery.SERVED)

``Page`` holds what the routes share: the page's configuration, the station's facts, the journal follower
and the live tap reader, all driven by the one event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from importlib import resources
from pathlib import Path

import tornado.httpserver
import tornado.ioloop
import tornado.iostream
import tornado.locks
import tornado.web

from inspectd.daemon.errors import ConfigError, InspectdError
from inspectd.daemon.records import RecordError, VerdictRecord
from inspectd.daemon.web.files import Refused, read_in
from inspectd.daemon.web.gallery import SERVED, pictures
from inspectd.daemon.web.journal import POLL_S, Follower, ImageRecords
from inspectd.daemon.web.live import LiveReader
from inspectd.daemon.web.model_facts import model_facts
from inspectd.daemon.web.security import HEADERS, HSTS, REALM, credentials_match, host_allowed
from inspectd.daemon.web.settings import WebConfig, is_loopback
from inspectd.daemon.web.station_facts import read_station

FACTS_EVERY_S = 30.0  # the station's file and the model folder are read again this often (a new model, a moved archive)
STALE_TAP_S = 5.0  # a continuous station whose tap is older than this (or 5 of its periods) has stopped taking frames
PUSH_S = 0.25  # state changes are sent at most this often
HEARTBEAT_S = 1.0  # and at least this often (the ages on the page move on)
LIVE_POLL_S = 0.1
MAX_EVENT_CLIENTS = 32
FAILED_LOGIN_DELAY_S = 1.0
STATIC = {"index.html": "text/html; charset=utf-8", "page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8",
          "icon.svg": "image/svg+xml"}
IMAGE_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}

log = logging.getLogger("inspectd.web")


class Page:
    def __init__(self, config: WebConfig, password: str | None) -> None:
        self.config, self.password = config, password
        self.station = read_station(config.station_config)
        self.model, normal = model_facts(self.station)
        self.live = LiveReader(self.station.live_folder if self.station.live_on else None)
        self.follower = Follower(config.journal_directory, config.shifts, normal, self.station.drift_window, self.mark_changed)
        self.images = ImageRecords(config.journal_directory, self.station.archive_path)
        self.lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-lookup")
        self.static = {name: (resources.files("inspectd.daemon.web") / "static" / name).read_bytes() for name in STATIC}
        self.changed = tornado.locks.Condition()
        self.dirty = True
        self.version = 0
        self.event_clients = 0
        self._state: bytes | None = None

    # ------------------------------------------------------------------ the loop's work

    def start(self) -> None:
        try:
            self.follower.open()
        except InspectdError as exc:
            self.follower.problem = str(exc)
        tornado.ioloop.PeriodicCallback(self.read_journal, POLL_S * 1000).start()
        tornado.ioloop.PeriodicCallback(self.poll_live, LIVE_POLL_S * 1000).start()
        tornado.ioloop.PeriodicCallback(self.push, PUSH_S * 1000).start()
        tornado.ioloop.PeriodicCallback(self.refresh_facts, FACTS_EVERY_S * 1000).start()
        self.poll_live()
        self.read_journal()

    def read_journal(self) -> None:
        if self.follower.reader is None:
            return
        try:
            more = self.follower.step()
        except Exception as exc:  # noqa: BLE001 - a journal that cannot be read is said on the page; serving goes on
            self.follower.problem = f"the journal cannot be read: {exc}"
            self.mark_changed()
            return
        if more:
            tornado.ioloop.IOLoop.current().add_callback(self.read_journal)

    def refresh_facts(self) -> None:
        """The station's file and the model folder again: a new model or a moved archive shows without restarting the page.
        (A changed drift window or journal takes a restart of the page: the shift would have to be read again.)"""
        station = read_station(self.config.station_config)
        model, normal = model_facts(station)
        if (station, model) == (self.station, self.model):
            return
        self.station, self.model = station, model
        self.follower.normal = self.follower.shift.normal = normal
        folder = station.live_folder if station.live_on else None
        if (self.live.folder and str(self.live.folder)) != folder:
            self.live = LiveReader(folder)
        if self.images.archive != station.archive_path:
            self.images = ImageRecords(self.config.journal_directory, station.archive_path)
        self.mark_changed()

    def ready(self) -> dict[str, object]:
        """The ready line's state from the journal, and a doubt the live tap raises about it (a station killed without a
        stop record, a camera that stopped giving frames: the journal alone cannot tell)."""
        ready = self.follower.shift.ready()
        tap, station = self.live, self.station
        if not ready["running"] or tap.folder is None or not self.follower.caught_up:
            return ready
        if tap.state is None:
            ready["doubt"] = ("the station's live tap is gone: the station is not running, though it wrote no stop record "
                              "(killed, or the machine restarted)")
        else:
            age, period = time.time() - tap.state.time, 1.0 / tap.state.rate_hz if tap.state.rate_hz else 0.0
            if age > max(STALE_TAP_S, 5 * period) and not station.frames_on_demand:
                ready["doubt"] = (f"no new frame for {age:.0f} s: the camera or the inspection has stopped; the watchdog restarts "
                                  "a hung station")
        return ready

    def poll_live(self) -> None:
        if self.live.poll():
            self.mark_changed()

    def mark_changed(self) -> None:
        self.dirty = True

    def push(self) -> None:
        now = time.monotonic()
        if self.dirty or now - getattr(self, "_pushed", 0.0) >= HEARTBEAT_S:
            self.dirty, self._pushed, self._state = False, now, None
            self.version += 1
            self.changed.notify_all()

    def state(self) -> bytes:
        if self._state is None:
            follower = self.follower
            state = {
                "server_time": time.time(), "station": self.station.to_json(), "model": self.model,
                "live": self.live.to_json(time.time()), "shift": follower.shift.to_json() | {"ready": self.ready()},
                "journal": {"caught_up": follower.caught_up, "read": follower.read_so_far, "problem": follower.problem,
                            "directory": self.config.journal_directory or None},
            }
            self._state = json.dumps(state, default=str, allow_nan=False).encode()
        return self._state

    async def gallery(self, verdict: str | None, before: str | None) -> list[dict]:
        found = pictures(Path(self.station.archive_path), verdict, before)
        items = []
        for picture in found:
            item = picture.to_json()
            record = self.follower.shift.images.get(picture.name)
            if record is None:
                entry = await asyncio.wrap_future(self.lookups.submit(self._lookup, picture.name))
                try:
                    record = VerdictRecord.from_entry(entry) if entry else None
                except RecordError:
                    record = None
            if record is not None:
                item |= {"score": record.score, "threshold": record.threshold, "time": record.time.isoformat(timespec="seconds")
                         if record.time else item["time"], "source": record.source}
            items.append(item)
        return items

    def close(self) -> None:
        self.follower.close()
        self.lookups.shutdown(wait=False, cancel_futures=True)

    def _lookup(self, name: str) -> dict | None:
        try:
            return self.images.find(name)
        except Exception:  # noqa: BLE001 - no record found: the picture is shown without its score
            return None


# ---------------------------------------------------------------------- the routes


class Handler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET",)  # read-only: anything else is 405

    @property
    def page(self) -> Page:
        return self.application.settings["page"]

    def set_default_headers(self) -> None:
        for name, value in HEADERS.items():
            self.set_header(name, value)
        if self.application.settings["page"].config.https:
            self.set_header("Strict-Transport-Security", HSTS)
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        config = self.page.config
        if is_loopback(config.listen) and not host_allowed(self.request.headers.get("Host"), config.listen, config.allowed_hosts):
            self.refuse(421, "this page answers to the station's own names only (web.toml allowed_hosts)")
            return
        password = self.page.password
        if password is not None and not credentials_match(self.request.headers.get("Authorization"), config.user, password):
            if self.request.headers.get("Authorization"):
                log.warning("refused a wrong password from %s for %s", self.request.remote_ip, self.request.path)
                await asyncio.sleep(FAILED_LOGIN_DELAY_S)
            self.set_header("WWW-Authenticate", REALM)
            self.refuse(401, "the station page needs its password")

    def refuse(self, status: int, text: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text + "\n")

    def write_error(self, status_code: int, **kwargs) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")  # never a traceback


class NotFound(Handler):
    def get(self, *args: str) -> None:
        raise tornado.web.HTTPError(404)


class PageFile(Handler):
    def get(self, name: str = "index.html") -> None:
        if name not in STATIC:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", STATIC[name])
        self.finish(self.page.static[name])


class State(Handler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(self.page.state())


class Events(Handler):
    async def get(self) -> None:
        page = self.page
        if page.event_clients >= MAX_EVENT_CLIENTS:
            raise tornado.web.HTTPError(503)
        page.event_clients += 1
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("X-Accel-Buffering", "no")
        try:
            sent = -1
            while True:
                if sent == page.version:
                    await page.changed.wait(timeout=timedelta(seconds=HEARTBEAT_S * 5))
                if sent != page.version:
                    sent = page.version
                    self.write(b"event: state\ndata: " + page.state() + b"\n\n")
                else:
                    self.write(b": still here\n\n")
                await self.flush()
        except tornado.iostream.StreamClosedError:
            pass
        finally:
            page.event_clients -= 1

    def on_connection_close(self) -> None:
        self.page.changed.notify_all()


class Gallery(Handler):
    async def get(self) -> None:
        verdict = self.get_query_argument("verdict", "reject")
        before = self.get_query_argument("before", None)
        if verdict not in ("reject", "pass", "all") or (before is not None and not SERVED.fullmatch(before)):
            raise tornado.web.HTTPError(400)
        items = await self.page.gallery(None if verdict == "all" else verdict, before)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"archive": self.page.station.archive_path, "pictures": items}, allow_nan=False,
                               default=lambda value: None if isinstance(value, float) and not math.isfinite(value) else str(value)))


class LiveFile(Handler):
    def get(self, name: str) -> None:
        try:
            if self.page.live.folder is None:
                raise Refused("the live tap is off")
            data = self.page.live.read(name)
        except Refused:
            raise tornado.web.HTTPError(404) from None
        self.image(name, data, "private, max-age=60")

    def image(self, name: str, data: bytes, cache: str) -> None:
        self.set_header("Content-Type", IMAGE_TYPES[Path(name).suffix])
        self.set_header("Cache-Control", cache)
        self.finish(data)


class ArchiveFile(LiveFile):
    def get(self, name: str) -> None:
        try:
            data = read_in(Path(self.page.station.archive_path), name, SERVED)
        except Refused:
            raise tornado.web.HTTPError(404) from None
        self.image(name, data, "private, max-age=3600")


def application(page: Page) -> tornado.web.Application:
    return tornado.web.Application([
        (r"/", PageFile),
        (r"/static/([a-z.]+)", PageFile),
        (r"/events", Events),
        (r"/api/state", State),
        (r"/api/gallery", Gallery),
        (r"/live/([^/]+)", LiveFile),
        (r"/archive/([^/]+)", ArchiveFile),
    ], page=page, default_handler_class=NotFound, compress_response=False, serve_traceback=False, xsrf_cookies=False)


def tls_context(config: WebConfig) -> ssl.SSLContext | None:
    if not config.https:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.certificate, config.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"the certificate {config.certificate} and key {config.key} cannot be used ({getattr(exc, 'strerror', None) or exc})",
                          file=config.file or None, key="certificate",
                          fix="PEM files readable by the service, the key matching the certificate") from None
    return context


def serve(page: Page) -> tornado.httpserver.HTTPServer:
    """Listens as configured (the caller runs the loop)."""
    config = page.config
    server = tornado.httpserver.HTTPServer(application(page), ssl_options=tls_context(config), idle_connection_timeout=60,
                                           body_timeout=10, max_body_size=4096, max_header_size=16 * 1024, decompress_request=False)
    try:
        server.listen(config.port, address=config.listen)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.listen} port {config.port} ({exc.strerror})", file=config.file or None, key="port",
                          fix="choose a free port, or an address of this machine") from None
    page.start()
    return server
