"""The station page in a real browser (Debian's headless Chromium) against the demo station running here.

The station (``inspectd run``: the demo model over the demo scenes, replayed in a loop) and the page
(``inspectd web``) run as processes inside a private journald's namespace, as under systemd: the station
writes its records and its live tap, the page follows them. The screenshots are kept in
``test-artifacts/web/`` (INSPECTD_ARTIFACTS to put them elsewhere).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DEMO_MODEL, ROOT
from inspectd.testing import browser
from inspectd.testing.journald import private_journald, unavailable_reason
from inspectd.daemon.demo.scene import generate_station_dataset

UNIT = "inspectd.service"
PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(os.environ.get("INSPECTD_ARTIFACTS", ROOT / "test-artifacts")) / "web"


def _reason() -> str | None:
    reason = unavailable_reason() or browser.unavailable_reason()
    if reason is None and subprocess.run([sys.executable, "-c", "import systemd.journal, tornado"], capture_output=True).returncode:
        reason = "systemd-python or tornado not importable (pip install systemd-python; pip install -e '.[web]')"
    return reason


pytestmark = pytest.mark.skipif(_reason() is not None, reason=f"cannot run the page's browser tests: {_reason()}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(0.1)


def fetch(port: int, path: str, headers: dict | None = None, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    connection = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10) if context
                  else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    try:
        connection.request("GET", path, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        connection.close()


def state(port: int) -> dict | None:
    status, body = fetch(port, "/api/state")
    return json.loads(body) if status == 200 else None


def station_toml(path: Path, images: Path, archive: Path, live: Path, extra: str = "") -> Path:
    path.write_text(f'[model]\npath = "{DEMO_MODEL}"\n\n[source]\nkind = "directory"\npath = "{images}"\nmode = "loop"\n{extra}\n'
                    f'[trigger]\nkind = "interval"\ninterval_ms = 150\n\n[journal]\nlog = "all"\n\n'
                    f'[archive]\npath = "{archive}"\n\n[live]\npath = "{live}"\nrate_hz = 2\n\n'
                    '[gpio]\nchip = "memory"\n[gpio.reject]\nline = "GPIO17"\n[gpio.ready]\nline = "GPIO27"\n')
    return path


def start_page(jd, folder: Path, station: Path, **keys: object) -> tuple[int, subprocess.Popen]:
    port = keys.pop("port", None) or free_port()
    lines = [f"port = {port}", f'station_config = "{station}"'] + [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    config = folder / f"web-{port}.toml"
    config.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(folder / "credentials")}
    log = open(folder / f"web-{port}.log", "w")
    process = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "web", "--config", str(config)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    return port, process


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    """The demo station and its page, running; yields what the tests look at."""
    work = tmp_path_factory.mktemp("plant")
    data = generate_station_dataset(work / "data", n_train=0, n_test_good=6, n_test_per_size=2)
    images = work / "images"
    images.mkdir()
    for image in sorted((data / "test").glob("*/*.png")):
        shutil.copy(image, images / f"{image.parent.name}_{image.name}")
    (work / "credentials").mkdir()
    (work / "credentials" / "web-password").write_text(PASSWORD + "\n")
    station = station_toml(work / "inspectd.toml", images, work / "rejects", work / "live")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with private_journald(work) as jd:
        station_log = open(work / "station.log", "w")
        jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(station)], unit=UNIT,
                      stdout=station_log, stderr=subprocess.STDOUT)
        port, page = start_page(jd, work, station)
        wait_until(lambda: (s := state(port)) and s["shift"]["rejects"] >= 1 and s["live"]["state"], 120, "the station's first reject on the page")
        yield {"jd": jd, "port": port, "page": page, "work": work, "images": images, "station": station}


def look(driver, port: int, path: str = "/"):
    driver.get(f"http://127.0.0.1:{port}{path}")
    wait_until(lambda: driver.execute_script("return document.querySelectorAll('#verdicts tbody tr').length > 0 && "
                                             "document.getElementById('live-image').naturalWidth > 0"), 30, "verdicts and a live frame")


def test_the_page_shows_the_running_station_with_no_console_error(plant):
    with browser.chromium() as driver:
        look(driver, plant["port"])
        wait_until(lambda: driver.find_element("id", "gallery").find_elements("css selector", "button.tile"), 20, "the gallery")
        time.sleep(1.5)  # a few more pushes: an error in rendering them would show
        driver.save_screenshot(str(ARTIFACTS / "page.png"))
        text = driver.find_element("tag name", "body").text
        assert "ready line: RUNNING" in text and "tf_efficientnet_lite0" in text and "128×128" in text
        assert driver.find_element("id", "verdict-word").text in ("PASS", "REJECT")
        assert float(driver.find_element("id", "sharpness").text) > 0 and "frames/s" in driver.find_element("id", "fps").text
        assert int(driver.find_element("id", "frames").text) > 0
        assert browser.console_errors(driver) == []
    rss = [line for line in Path(f"/proc/{plant['page'].pid}/status").read_text().splitlines() if line.startswith("VmRSS")]
    print(f"\nthe page process after four browsers: {rss[0].split(':')[1].strip()} (budget 60 MB; bench/web_cost.py measures it)")


def test_the_live_image_changes_between_two_looks(plant):
    with browser.chromium() as driver:
        look(driver, plant["port"])
        image = driver.find_element("id", "live-image")
        shown = "return arguments[0].complete && arguments[0].naturalWidth > 0"
        wait_until(lambda: driver.execute_script(shown, image), 30, "a first live frame")
        first, first_pixels = image.get_attribute("src"), image.screenshot_as_png
        # Pixels, not only the address: the tap may publish the same frame again while a loaded station judges the next.
        wait_until(lambda: image.get_attribute("src") != first and driver.execute_script(shown, image)
                   and image.screenshot_as_png != first_pixels, 30, "a live frame with other pixels")
        assert browser.console_errors(driver) == []


def test_a_reject_is_on_the_page_within_2_s_of_its_journal_record(plant):
    """Each REJECT record's journald time against the moment its row first appeared in the browser (one clock, one machine)."""
    with browser.chromium() as driver:
        look(driver, plant["port"])
        driver.execute_script("""
            window.firstSeen = {};
            const body = document.querySelector('#verdicts tbody');
            const note = () => { for (const row of body.rows) if (row.classList.contains('reject') && !(row.dataset.frame in firstSeen))
                                   firstSeen[row.dataset.frame] = Date.now(); };
            note();
            window.before = Object.keys(firstSeen);
            new MutationObserver(note).observe(body, {childList: true});""")
        time.sleep(8)
        seen = driver.execute_script("return [window.firstSeen, window.before]")
    first_seen, before = seen
    records = {r["INSPECTD_FRAME"]: int(r["__REALTIME_TIMESTAMP"]) / 1000 for r in plant["jd"].read_records(INSPECTD_VERDICT="REJECT")}
    delays = {frame: at - records[frame] for frame, at in first_seen.items() if frame not in before}
    assert delays, f"no new REJECT shown in 8 s (seen {first_seen}, records {sorted(records)[-5:]})"
    print(f"\nREJECT record -> row on the page: {len(delays)} rejects, worst {max(delays.values()):.0f} ms, "
          f"median {sorted(delays.values())[len(delays) // 2]:.0f} ms")
    assert max(delays.values()) <= 2000, delays


def test_the_gallery_opens_a_heatmap(plant):
    with browser.chromium() as driver:
        look(driver, plant["port"])
        tiles = wait_until(lambda: driver.find_elements("css selector", "#gallery button.tile"), 20, "the gallery's tiles")
        assert "score" in tiles[0].text and "no record" not in tiles[0].text, tiles[0].text
        tiles[0].click()
        picture = driver.find_element("id", "picture-image")
        wait_until(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", picture), 10, "the heatmap")
        assert picture.get_attribute("src").endswith("-heatmap.jpg") and driver.find_element("id", "picture").is_displayed()
        assert "REJECT" in driver.find_element("id", "picture-caption").text
        driver.save_screenshot(str(ARTIFACTS / "gallery-heatmap.png"))
        assert browser.console_errors(driver) == []


def test_dotdot_paths_are_refused(plant):
    port, archive = plant["port"], plant["work"] / "rejects"
    secret = plant["work"] / "inspectd.toml"
    for path in ("/archive/../../../../etc/passwd", "/archive/..%2f..%2f..%2fetc%2fpasswd", "/archive/%2e%2e%2finspectd.toml",
                 "/live/..%2finspectd.toml", "/archive/..%5c..%5cetc%5cpasswd"):
        status, body = fetch(port, path)
        assert status == 404 and b"root:" not in body and b"[model]" not in body, path
    name = sorted(p.name for p in archive.glob("*-reject.png"))[0]
    planted = archive / name.replace("-reject.png", "-9-reject.png").replace("-0", "-9", 1)
    os.symlink(secret, archive / "20991231-235959-99999999-reject.png")
    assert fetch(port, "/archive/20991231-235959-99999999-reject.png")[0] == 404, "a symlink under a valid name was followed"
    assert not planted.exists()
    with browser.chromium() as driver:
        driver.get(f"http://127.0.0.1:{port}/archive/..%2f..%2finspectd.toml")
        assert "404" in driver.find_element("tag name", "body").text and "[model]" not in driver.page_source


def test_a_non_loopback_listener_refuses_a_request_without_the_password(plant, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port, process = start_page(plant["jd"], plant["work"], plant["station"], listen="0.0.0.0", password="web-password",
                               certificate=str(cert), key=str(key))
    context = ssl.create_default_context(cafile=str(cert))
    wait_until(lambda: fetch(port, "/", context=context)[0] == 401, 30, "the page on 0.0.0.0")
    for path in ("/", "/api/state", "/events", "/api/gallery"):
        status, body = fetch(port, path, context=context)
        assert status == 401 and b"tf_efficientnet" not in body, path
    assert fetch(port, "/api/state", {"Authorization": "Basic " + base64.b64encode(b"inspectd:wrong").decode()}, context)[0] == 401
    right = {"Authorization": "Basic " + base64.b64encode(f"inspectd:{PASSWORD}".encode()).decode()}
    status, body = fetch(port, "/api/state", right, context)
    assert status == 200 and json.loads(body)["shift"]["frames"] > 0
    assert fetch(port, "/api/state")[0] == 0, "plain HTTP answered on the HTTPS listener"
    with browser.chromium() as driver:
        driver.get(f"https://localhost:{port}/")  # headless Chromium: the certificate is not trusted, so the page is not shown
        assert "ready line" not in driver.page_source
    process.terminate()
    process.wait(10)


def test_setup_mode_shows_the_camera_through_the_roi_with_no_model(plant, tmp_path):
    setup = station_toml(tmp_path / "setup.toml", plant["images"], tmp_path / "rejects", tmp_path / "live",
                         extra="roi = [120, 60, 240, 260]").read_text().replace(str(DEMO_MODEL), "/nonexistent/model")
    (tmp_path / "setup.toml").write_text(setup)
    jd = plant["jd"]
    viewer = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "setup", "--config", str(tmp_path / "setup.toml")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port, page = start_page(jd, tmp_path, tmp_path / "setup.toml")
    try:
        wait_until(lambda: (s := state(port)) and s["live"]["state"] and s["live"]["state"]["mode"] == "setup", 60, "the setup frames")
        with browser.chromium() as driver:
            driver.get(f"http://127.0.0.1:{port}/")
            wait_until(lambda: driver.execute_script("return document.getElementById('live-image').naturalWidth > 0"), 20, "a frame")
            roi = driver.find_element("id", "roi")
            assert driver.find_element("id", "setup-banner").is_displayed() and roi.is_displayed()
            frame = driver.find_element("id", "live-image")
            assert roi.size["width"] == pytest.approx(frame.size["width"] * 240 / 480, abs=3)
            assert roi.location["x"] - frame.location["x"] == pytest.approx(frame.size["width"] * 120 / 480, abs=3)
            assert driver.find_element("id", "verdict-word").text == "–" and float(driver.find_element("id", "sharpness").text) > 0
            driver.save_screenshot(str(ARTIFACTS / "setup-mode.png"))
            assert browser.console_errors(driver) == []
    finally:
        viewer.terminate()
        page.terminate()
        viewer.wait(10)
        page.wait(10)
