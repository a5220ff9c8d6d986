"""The page's server in this process, answering real HTTP on 127.0.0.1: what it serves, what it refuses, and the
headers every answer carries. The journal is an empty folder of journal files; the live tap and the archive
are folders these tests write (the station's own tap is tested with the station in tests/integration/test_web.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from inspectd.daemon.station.outputs.live import LiveConfig, LiveTap, Shown
from inspectd.daemon.web.security import CONTENT_SECURITY_POLICY
from inspectd.daemon.web.server import Page, serve
from inspectd.daemon.web.settings import WebConfig

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo-mug"
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(config: WebConfig, password: str | None = None):
    started, holder = threading.Event(), {}

    async def main() -> None:
        page = Page(config, password)
        server = serve(page)
        holder["stop"], holder["loop"] = asyncio.Event(), asyncio.get_running_loop()
        started.set()
        await holder["stop"].wait()
        server.stop()
        page.close()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert started.wait(20), "the page did not start"
    try:
        yield
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


@pytest.fixture
def station(tmp_path):
    """A station's file, an archive with one reject, and a live tap holding one frame."""
    archive, live, journal = tmp_path / "rejects", tmp_path / "live", tmp_path / "journal"
    for folder in (archive, journal):
        folder.mkdir()
    (archive / "20261201-060000-00000007-reject.png").write_bytes(b"\x89PNG frame")
    (archive / "20261201-060000-00000007-reject-heatmap.jpg").write_bytes(b"\xff\xd8 heatmap")  # the archive's JPEG picture
    (tmp_path / "secret.png").write_bytes(b"secret")
    (archive / "20261201-060000-00000008-reject.png").symlink_to(tmp_path / "secret.png")
    tap = LiveTap(LiveConfig(path=str(live), rate_hz=2.0), mode="setup")
    tap.write(Shown(np.full((48, 64, 3), 90, np.uint8), 5.0, roi=[8, 8, 32, 32]))
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO}"\n[archive]\npath = "{archive}"\n[live]\npath = "{live}"\n')
    return {"config": config, "journal": journal, "tmp": tmp_path}


def web(station, **values) -> WebConfig:
    return WebConfig(**{"port": free_port(), "station_config": str(station["config"]), "journal_directory": str(station["journal"]), **values})


def get(port: int, path: str, headers: dict | None = None, method: str = "GET", context: ssl.SSLContext | None = None):
    connection = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10) if context
                  else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    connection.request(method, path, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def test_the_page_its_state_and_its_pictures(station):
    config = web(station)
    with serving(config):
        response, body = get(config.port, "/")
        assert response.status == 200 and b"/static/page.js" in body and b"<script>" not in body and b"style=" not in body
        for name in ("page.js", "page.css", "icon.svg"):
            assert get(config.port, f"/static/{name}")[0].status == 200
        response, body = get(config.port, "/api/state")
        state = json.loads(body)
        assert state["live"]["state"]["mode"] == "setup" and state["live"]["state"]["roi"] == [8, 8, 32, 32]
        assert state["model"]["backbone"] == "tf_efficientnet_lite0" and state["shift"]["frames"] == 0
        frame = state["live"]["state"]["frame"]
        response, body = get(config.port, f"/live/{frame}")
        assert response.status == 200 and response.getheader("Content-Type") == "image/jpeg" and body[:2] == b"\xff\xd8"
        response, body = get(config.port, "/api/gallery")
        pictures = json.loads(body)["pictures"]
        assert [p["name"] for p in pictures] == ["20261201-060000-00000007-reject.png"]
        assert pictures[0]["heatmap"] == "20261201-060000-00000007-reject-heatmap.jpg"
        response, body = get(config.port, "/archive/" + pictures[0]["heatmap"])
        assert response.status == 200 and response.getheader("Content-Type") == "image/jpeg" and body == b"\xff\xd8 heatmap"


def test_every_answer_carries_the_strict_policy_and_nothing_changes_anything(station):
    config = web(station)
    with serving(config):
        for path in ("/", "/api/state", "/nothing/here", "/archive/x.png"):
            response, _ = get(config.port, path)
            assert response.getheader("Content-Security-Policy") == CONTENT_SECURITY_POLICY, path
            assert response.getheader("X-Content-Type-Options") == "nosniff" and response.getheader("X-Frame-Options") == "DENY"
        assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert get(config.port, "/api/state", method=method)[0].status == 405, method


@pytest.mark.parametrize("path", ["/archive/../../../etc/passwd", "/archive/..%2f..%2f..%2fetc%2fpasswd", "/archive/%2e%2e",
                                  "/archive/20261201-060000-00000008-reject.png", "/live/..%2flive.json", "/live/live.json",
                                  "/archive/20261201-060000-00000007-reject.png%2f..%2f..%2fsecret.png", "/static/..%2f__init__.py"])
def test_paths_cannot_leave_the_archive_or_the_tap(station, path):
    config = web(station)
    with serving(config):
        response, body = get(config.port, path)
        assert response.status == 404 and b"secret" not in body and b"root:" not in body


def test_a_loopback_page_answers_to_loopback_names_only(station):
    config = web(station, allowed_hosts=["station-7.plant"])
    with serving(config):
        for host, status in (("localhost", 200), ("[::1]", 200), ("station-7.plant", 200), ("attacker.example", 421), ("", 421)):
            response, _ = get(config.port, "/api/state", headers={"Host": f"{host}:{config.port}" if host else ""})
            assert response.status == status, host


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_off_loopback_every_request_needs_the_password_over_https(station):
    cert, key = self_signed(station["tmp"])
    config = web(station, listen="0.0.0.0", password="web-password", certificate=str(cert), key=str(key))
    context = ssl.create_default_context(cafile=str(cert))
    right = "Basic " + base64.b64encode(f"inspectd:{PASSWORD}".encode()).decode()
    wrong = "Basic " + base64.b64encode(b"inspectd:guess").decode()
    with serving(config, PASSWORD):
        for path in ("/", "/api/state", "/events", "/archive/20261201-060000-00000007-reject.png", "/nothing"):
            response, body = get(config.port, path, context=context)
            assert response.status == 401 and response.getheader("WWW-Authenticate").startswith("Basic"), path
            assert b"inspectd" not in body.lower().replace(b"the station page needs its password", b""), path
        assert get(config.port, "/api/state", headers={"Authorization": wrong}, context=context)[0].status == 401
        response, _ = get(config.port, "/api/state", headers={"Authorization": right, "Host": "plant-pc.example"}, context=context)
        assert response.status == 200 and response.getheader("Strict-Transport-Security")
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            response, _ = get(config.port, "/api/state", headers={"Authorization": right})  # plain HTTP to the HTTPS port
            assert response.status != 200


def test_the_live_tap_raises_a_doubt_the_journal_cannot(station):
    """A station killed without a stop record, or a camera that stopped giving frames, still reads as running in the journal."""
    from datetime import datetime

    from inspectd.daemon.records import MESSAGE_IDS, RecordKind

    page = Page(web(station), None)
    page.follower.caught_up = True
    page.follower.shift.add({"MESSAGE_ID": MESSAGE_IDS[RecordKind.START], "MESSAGE": "started", "__REALTIME_TIMESTAMP": datetime.now()})
    page.poll_live()
    assert page.ready()["running"] and "doubt" not in page.ready()
    page.live.state.time -= 60
    assert "no new frame for 60 s" in page.ready()["doubt"]
    (station["tmp"] / "live" / "live.json").unlink()
    page.poll_live()
    assert "live tap is gone" in page.ready()["doubt"]
    station["config"].write_text(station["config"].read_text() + '[trigger]\nkind = "gpio"\n')
    page.refresh_facts()
    assert page.station.frames_on_demand
    page.close()
