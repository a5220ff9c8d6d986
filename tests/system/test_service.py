"""systemd/inspectd.service under real systemd: a Debian bookworm container booted with
systemd-nspawn (tests/harness/nspawn.py), inspectd installed from its amd64 package with apt
the way the README installs it on the Pi (the unit, catalog, user and configuration come with
it), plus a test drop-in.

The container has no network: the host builds the package from this checkout
(systemd/deb/build.sh; the runtime's wheels are cached under /var/cache/inspectd-ci/deb-wheels/).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import DEMO_MODEL, ROOT
from inspectd.testing.nspawn import DEFAULT_ROOT, Container, booted_container, unavailable_reason
from inspectd.daemon.demo.scene import generate_station_dataset

_reason = unavailable_reason(DEFAULT_ROOT)
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"nspawn container unavailable: {_reason}")

UNIT = "inspectd.service"
CONFIG = "/etc/inspectd/inspectd.toml"
IMAGES = "/srv/inspectd/images"
WATCH = "/srv/inspectd/watch"
VERDICT = "5a01ba8d9a354266b5189ac90117b557"
STOP = "4524c69a4ea1475bbf70cdc8b03c4973"
RELOAD = "960be9cf77f44ea886f0c8ff08625ec6"
VERDICT_FIELDS = {"MESSAGE", "PRIORITY", "MESSAGE_ID", "INSPECTD_VERDICT", "INSPECTD_SCORE", "INSPECTD_THRESHOLD",
                  "INSPECTD_FRAME", "INSPECTD_LATENCY_MS", "INSPECTD_MODEL", "INSPECTD_SOURCE"}  # fmt: skip

# The test's only changes to the shipped unit: a short watchdog, so a hang is caught quickly,
# and no core dumps (the watchdog kills with SIGABRT; a core of the process is large).
DROP_IN = """\
[Service]
WatchdogSec=3
LimitCORE=0
"""


# ---------------------------------------------------------------- the package, built on the host


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> Path:
    """What gets copied into the container: the demo model and a few demo station images."""
    folder = tmp_path_factory.mktemp("payload")
    shutil.copytree(DEMO_MODEL, folder / "model")
    data = generate_station_dataset(folder / "data", n_train=0, n_test_good=3, n_test_per_size=1)
    (folder / "images").mkdir()
    for image in sorted((data / "test").glob("*/*.png")):
        shutil.copy(image, folder / "images" / f"{image.parent.name}_{image.name}")
    return folder


# ---------------------------------------------------------------- the station inside the container


def station_config(source: str) -> str:
    """The shipped example configuration with GPIO removed and the given [source] keys."""
    example = (ROOT / "systemd" / "inspectd.toml").read_text()
    marker = "# Remove this table to run without GPIO."
    assert marker in example, "systemd/inspectd.toml changed: update station_config()"
    text, replaced = re.subn(r'^kind = "picamera2".*$', source, example[: example.index(marker)], count=1, flags=re.M)
    assert replaced == 1
    text, removed = re.subn(r"^(width|height|settle_ms) = .*\n", "", text, flags=re.M)  # the picamera2 keys: refused with another kind
    assert removed == 3
    parsed = tomllib.loads(text)
    assert "gpio" not in parsed and parsed["source"]["kind"] == tomllib.loads(source)["kind"]
    return text


LOOP = station_config(f'kind = "directory"\npath = "{IMAGES}"\nmode = "loop"')
WATCH_CONFIG = station_config(f'kind = "directory"\npath = "{WATCH}"\nmode = "watch"')
# OpenCV opening a FIFO that no one writes to blocks forever, as a stream that stops answering would.
HUNG_STREAM = "/srv/inspectd/stream.fifo"
HUNG_CONFIG = station_config(f'kind = "opencv"\ndevice = "{HUNG_STREAM}"')
# A key that does not exist: the daemon must exit with 78 (EX_CONFIG), and systemd must not restart it.
BAD_CONFIG = LOOP.replace('device = "CPU"', 'device = "CPU"\ndevise = "GPU"', 1)


@pytest.fixture
def station(amd64_package, payload) -> Iterator[Container]:
    """A booted container with the inspectd package installed (user, unit, catalog, config), the test drop-in, the demo model and images."""
    with booted_container(DEFAULT_ROOT, binds_ro=[(amd64_package.parent, "/mnt/deb"), (payload, "/mnt/payload")]) as box:
        box.run(["apt-get", "install", "-y", "-q", f"/mnt/deb/{amd64_package.name}"], timeout=300)
        box.write_file(f"/etc/systemd/system/{UNIT}.d/50-test.conf", DROP_IN)
        box.run(["mkdir", "-p", "/srv/inspectd", WATCH])
        box.run(["cp", "-r", "/mnt/payload/model", "/var/lib/inspectd/model"])  # the example config's model.path
        box.run(["cp", "-r", "/mnt/payload/images", IMAGES])
        box.run(["chmod", "-R", "a+rX", "/var/lib/inspectd", "/srv/inspectd"])
        box.write_file(CONFIG, LOOP)
        box.run(["systemctl", "daemon-reload"])
        yield box


def show(box: Container, *properties: str) -> dict[str, str]:
    out = box.run(["systemctl", "show", UNIT, *(f"--property={p}" for p in properties)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(box: Container, *matches: str) -> list[dict]:
    """The unit's records (its own and systemd's about it), oldest first."""
    out = box.run(["journalctl", "--no-pager", "-o", "json", "-u", UNIT, *matches]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def journal_text(box: Container, *options: str) -> str:
    return box.run(["journalctl", "--no-pager", "-u", UNIT, *options]).stdout


def verdicts_after(records: list[dict], record: dict) -> list[dict]:
    cursors = [r["__CURSOR"] for r in records]
    return [r for r in records[cursors.index(record["__CURSOR"]) + 1 :] if r.get("MESSAGE_ID") == VERDICT]


def wait_for(check: Callable[[], object], what: str, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


def start(box: Container) -> subprocess.CompletedProcess:
    return box.run(["systemctl", "start", UNIT], check=False, timeout=180)


# ---------------------------------------------------------------- tests


def test_start_verdicts_reload_stop(station: Container, payload: Path):
    box = station
    started = start(box)
    assert started.returncode == 0, started.stderr + journal_text(box)
    state = show(box, "ActiveState", "SubState", "Type", "WatchdogUSec", "NRestarts", "User")
    assert state == {"ActiveState": "active", "SubState": "running", "Type": "notify", "WatchdogUSec": "3s",
                     "NRestarts": "0", "User": "inspectd"}  # fmt: skip

    # Type=notify: `systemctl start` returned only after READY=1, which comes after the first verdict.
    records = journal(box)
    started_at = next(i for i, r in enumerate(records) if r.get("JOB_TYPE") == "start" and r.get("JOB_RESULT") == "done")
    assert any(r.get("MESSAGE_ID") == VERDICT for r in records[:started_at]), "READY=1 before any verdict"

    # The loop replays the images over and over: more verdicts than images.
    names = sorted(p.name for p in (payload / "images").iterdir())
    verdicts = wait_for(lambda: (v := journal(box, f"MESSAGE_ID={VERDICT}")) and len(v) > 2 * len(names) and v,
                        "verdict records from the looping source")  # fmt: skip
    uid = box.run(["id", "-u", "inspectd"]).stdout.strip()
    model_id = hashlib.sha256((payload / "model" / "model.bin").read_bytes()).hexdigest()
    for record in verdicts:
        assert VERDICT_FIELDS <= set(record), VERDICT_FIELDS - set(record)
        assert record["_SYSTEMD_UNIT"] == UNIT and record["_UID"] == uid and record["SYSLOG_IDENTIFIER"] == "inspectd"
        assert record["INSPECTD_MODEL"] == model_id
        assert record["INSPECTD_SOURCE"] in names
        assert record["PRIORITY"] == {"PASS": "6", "REJECT": "4"}[record["INSPECTD_VERDICT"]]
        if record["INSPECTD_VERDICT"] == "REJECT":
            assert record["INSPECTD_IMAGE"].startswith("/var/lib/inspectd/rejects/")
    frames = [int(r["INSPECTD_FRAME"]) for r in verdicts]
    assert frames == list(range(1, len(frames) + 1))
    assert [r["INSPECTD_SOURCE"] for r in verdicts[: 2 * len(names)]] == names * 2
    assert {r["INSPECTD_VERDICT"] for r in verdicts} == {"PASS", "REJECT"}
    reject = next(r for r in verdicts if r["INSPECTD_VERDICT"] == "REJECT")
    wait_for(lambda: box.run(["test", "-f", reject["INSPECTD_IMAGE"]], check=False).returncode == 0, "the archived reject image")

    # The catalog explains the records (journalctl -x).
    assert f"Subject: inspectd verdict {verdicts[0]['INSPECTD_VERDICT']} for frame 1" in journal_text(box, "-x", "INSPECTD_FRAME=1")

    main_pid = show(box, "MainPID")["MainPID"]
    reload = box.run(["systemctl", "reload", UNIT], check=False)
    assert reload.returncode == 0, reload.stderr + journal_text(box)
    reloaded = wait_for(lambda: journal(box, f"MESSAGE_ID={RELOAD}"), "the reload record")
    assert reloaded[0]["INSPECTD_MODEL"] == model_id and reloaded[0]["PRIORITY"] == "5"
    wait_for(lambda: verdicts_after(journal(box), reloaded[0]), "verdicts after the reload")
    # Reloaded in place: same process, still active, never restarted.
    assert show(box, "ActiveState", "MainPID", "NRestarts") == {"ActiveState": "active", "MainPID": main_pid, "NRestarts": "0"}

    stopped = box.run(["systemctl", "stop", UNIT], check=False, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    stop = journal(box, f"MESSAGE_ID={STOP}")
    assert len(stop) == 1 and int(stop[0]["INSPECTD_FRAMES"]) >= len(verdicts)
    assert show(box, "ActiveState", "Result", "ExecMainStatus") == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}


def test_watched_folder_is_ready_before_the_first_part(station: Container, payload: Path):
    """On an idle line (no part yet) the unit must still start: READY=1 cannot wait for a first frame."""
    box = station
    box.write_file(CONFIG, WATCH_CONFIG)
    started = start(box)
    assert started.returncode == 0, started.stderr + journal_text(box)
    assert show(box, "ActiveState")["ActiveState"] == "active"
    assert journal(box, f"MESSAGE_ID={VERDICT}") == []

    # A part arrives the way the README recommends: written under a temporary (hidden) name, then renamed.
    image = sorted((payload / "images").iterdir())[0].name
    box.run(["sh", "-c", f"cp {IMAGES}/{image} {WATCH}/.part-1.png && mv {WATCH}/.part-1.png {WATCH}/part-1.png"])
    verdicts = wait_for(lambda: journal(box, f"MESSAGE_ID={VERDICT}"), "a verdict for the part dropped into the watched folder")
    assert [(r["INSPECTD_FRAME"], r["INSPECTD_SOURCE"]) for r in verdicts] == [("1", "part-1.png")]
    assert show(box, "NRestarts")["NRestarts"] == "0"


def test_watchdog_kills_a_hung_source_and_systemd_restarts_it(station: Container):
    box = station
    started = start(box)
    assert started.returncode == 0, started.stderr + journal_text(box)
    wait_for(lambda: journal(box, f"MESSAGE_ID={VERDICT}"), "a first verdict")

    box.run(["mkfifo", "-m", "0644", HUNG_STREAM])
    box.write_file(CONFIG, HUNG_CONFIG)
    reload = box.run(["systemctl", "reload", UNIT], check=False)
    assert reload.returncode == 0, reload.stderr + journal_text(box)
    wait_for(lambda: journal(box, f"MESSAGE_ID={RELOAD}"), "the reload into the hung stream")

    wait_for(lambda: int(show(box, "NRestarts")["NRestarts"]) > 0, "systemd to restart the hung service", timeout=90)
    log = journal_text(box)
    assert "Watchdog timeout (limit 3s)!" in log, log[-3000:]
    assert "Failed with result 'watchdog'" in log
    assert "Scheduled restart job" in log


def test_bad_config_exits_78_and_is_not_restarted(station: Container):
    box = station
    box.write_file(CONFIG, BAD_CONFIG)
    started = start(box)
    assert started.returncode != 0
    # No restart is pending: with one scheduled the unit would be "activating (auto-restart)", not failed.
    state = show(box, "ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert state == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "78", "NRestarts": "0"}, journal_text(box)
    log = journal_text(box)
    assert f"inspectd: {CONFIG}: key model.devise: unknown key; valid keys in [model]: " in log, log[-3000:]
    assert "Traceback" not in log
