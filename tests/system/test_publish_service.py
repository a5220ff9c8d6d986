"""systemd/inspectd-publish.service under real systemd (a Debian bookworm container booted with systemd-nspawn), from
the inspectd package as a station installs it, with Mosquitto (Debian's package, its .debs fetched once on the host
with apt) on the container's loopback with TLS and a password: the hardened unit starts (Type=notify), reads the
station's journal as its own user, takes the password from its credential, publishes the demo station's verdicts,
serves its metrics, comes back after SIGKILL where it left off, and says in its state that the station's unit failed;
and across a reboot of the container (systemctl reboot, the same root and overlay booted again: new boot id, the
persistent journal and /var/lib kept) it resumes from its stored position, the previous boot's records the broker had
not acknowledged published first, no verdict lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import DEMO_MODEL
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.records import MESSAGE_IDS, RecordKind
from inspectd.testing.mosquitto import make_certificates
from inspectd.testing.nspawn import DEFAULT_ROOT, Container, booted_container, unavailable_reason

_reason = unavailable_reason(DEFAULT_ROOT)
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"nspawn container unavailable: {_reason}")

DEBS = Path(os.environ.get("INSPECTD_CI_CACHE", "/var/cache/inspectd-ci")) / "mosquitto-debs"
PASSWORD = "station-secret"
TOPICS = "inspectd/station-p/#"
KINDS = {message_id: kind for kind, message_id in MESSAGE_IDS.items()}


@pytest.fixture(scope="module")
def mosquitto_debs() -> Path:
    """Mosquitto and its clients, and what they need beyond the container root's packages, fetched once with the host's
    apt into $INSPECTD_CI_CACHE/mosquitto-debs (the root's dpkg status says what is there already)."""
    if not any(DEBS.glob("mosquitto_*.deb")) or not any(DEBS.glob("mosquitto-clients_*.deb")):
        (DEBS / "partial").mkdir(parents=True, exist_ok=True)
        fetch = subprocess.run(["apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends",
                                f"-o=Dir::State::status={DEFAULT_ROOT}/var/lib/dpkg/status", f"-o=Dir::Cache::archives={DEBS}",
                                "mosquitto", "mosquitto-clients"], capture_output=True, text=True)
        if fetch.returncode != 0:
            pytest.skip(f"cannot fetch mosquitto's packages with apt: {fetch.stderr.strip()[-300:]}")
    return DEBS


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("payload")
    data = generate_station_dataset(folder / "data", n_train=0, n_test_good=3, n_test_per_size=1)
    (folder / "images").mkdir()
    for image in sorted((data / "test").glob("*/*.png")):
        (folder / "images" / f"{image.parent.name}_{image.name}").write_bytes(image.read_bytes())
    make_certificates(folder / "tls")
    subprocess.run(["cp", "-r", str(DEMO_MODEL), str(folder / "model")], check=True)
    return folder


@pytest.fixture
def station(amd64_package: Path, mosquitto_debs: Path, payload: Path) -> Iterator[Container]:
    binds = [(amd64_package.parent, "/mnt/deb"), (mosquitto_debs, "/mnt/mosquitto"), (payload, "/mnt/payload")]
    with booted_container(DEFAULT_ROOT, binds_ro=binds) as box:
        box.run(["python3", "-c", "import socket; socket.sethostname('station-p')"])
        box.write_file("/etc/hostname", "station-p\n")  # the station id, after a reboot too
        box.write_file("/etc/hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost\n")  # debootstrap's minbase has none; a Pi has
        box.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", f"/mnt/deb/{amd64_package.name}",
                 *(f"/mnt/mosquitto/{deb.name}" for deb in sorted(mosquitto_debs.glob("*.deb")))], timeout=300)
        # The broker: TLS on 8883 with the test CA's certificate for "localhost", a password file.
        box.run(["mkdir", "-p", "/etc/mosquitto/certs"])
        box.run(["sh", "-c", "cp /mnt/payload/tls/ca.crt /mnt/payload/tls/server.crt /mnt/payload/tls/server.key /etc/mosquitto/certs/ "
                             "&& chown -R mosquitto /etc/mosquitto/certs"])
        box.run(["mosquitto_passwd", "-b", "-c", "/etc/mosquitto/passwd", "station-p", PASSWORD])
        box.run(["chown", "mosquitto", "/etc/mosquitto/passwd"])
        box.write_file("/etc/mosquitto/conf.d/test.conf", "per_listener_settings false\nallow_anonymous false\n"
                       "password_file /etc/mosquitto/passwd\nlistener 8883 127.0.0.1\ncafile /etc/mosquitto/certs/ca.crt\n"
                       "certfile /etc/mosquitto/certs/server.crt\nkeyfile /etc/mosquitto/certs/server.key\n")
        box.run(["systemctl", "restart", "mosquitto"])
        # The station: the demo model over its images in a loop.
        box.run(["cp", "-r", "/mnt/payload/model", "/var/lib/inspectd/model"])
        box.run(["cp", "-r", "/mnt/payload/images", "/srv/images"])
        box.run(["chmod", "-R", "a+rX", "/var/lib/inspectd", "/srv/images"])
        box.write_file("/etc/inspectd/inspectd.toml", '[model]\npath = "/var/lib/inspectd/model"\n\n[source]\nkind = "directory"\n'
                       'path = "/srv/images"\nmode = "loop"\n\n[trigger]\nkind = "interval"\ninterval_ms = 100.0\n')
        # The publisher, as the README sets it up: the CA, the password as a credential (root, 0600), publish.toml.
        box.run(["cp", "/mnt/payload/tls/ca.crt", "/etc/inspectd/mqtt-ca.crt"])
        box.write_file("/etc/inspectd/mqtt-password", PASSWORD + "\n", mode=0o600)
        example = box.run(["cat", "/etc/inspectd/publish.toml"]).stdout
        box.write_file("/etc/inspectd/publish.toml", example.replace('username = ""', 'username = "station-p"')
                       .replace('tls_ca_file = ""', 'tls_ca_file = "/etc/inspectd/mqtt-ca.crt"'))
        yield box


def wait_for(check, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)
    return result


def received(box: Container, seconds: float) -> list[tuple[str, dict | str]]:
    """What a subscriber with a persistent session gets in ``seconds`` (the broker keeps what came while it was away)."""
    out = box.run(["mosquitto_sub", "-h", "localhost", "-p", "8883", "--cafile", "/etc/inspectd/mqtt-ca.crt", "-u", "station-p",
                   "-P", PASSWORD, "-q", "1", "-c", "-i", "test-subscriber", "-t", TOPICS, "-v", "-W", str(int(seconds))],
                  check=False, timeout=seconds + 30).stdout
    messages = []
    for line in out.splitlines():
        topic, _, body = line.partition(" ")
        try:
            messages.append((topic, json.loads(body)))
        except ValueError:
            messages.append((topic, body))
    return messages


def test_the_hardened_unit_publishes_resumes_and_says_the_station_failed(station: Container):
    box = station
    check = box.run(["runuser", "-u", "inspectd-publish", "--", "inspectd", "publish", "--check"], check=False)
    assert check.returncode == 0, check.stderr  # readable by its own user; the password file itself is root's alone
    assert "mqtts://localhost:8883" in check.stdout
    received(box, 1)  # the subscriber's session exists from now on: the broker queues for it
    assert box.run(["systemctl", "start", "inspectd.service"], check=False, timeout=180).returncode == 0
    started = box.run(["systemctl", "start", "inspectd-publish.service"], check=False, timeout=60)
    assert started.returncode == 0, started.stderr + box.run(["journalctl", "--no-pager", "-u", "inspectd-publish"], check=False).stdout
    shown = dict(line.split("=", 1) for line in box.run(["systemctl", "show", "inspectd-publish", "--property=ActiveState",
                                                         "--property=User", "--property=Type"]).stdout.splitlines())
    assert shown == {"ActiveState": "active", "User": "inspectd-publish", "Type": "notify"}

    first = [body for topic, body in received(box, 4) if topic.endswith("/verdict")]
    assert first, box.run(["journalctl", "--no-pager", "-u", "inspectd-publish"], check=False).stdout
    metrics = box.run(["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9811/metrics').read().decode())"]).stdout
    assert "inspectd_judging 1" in metrics and "inspectd_publish_connected 1" in metrics

    # Killed: systemd restarts it (Restart=always); it resumes from its position, owned by its own user.
    box.run(["systemctl", "kill", "--signal=SIGKILL", "inspectd-publish.service"])
    wait_for(lambda: box.run(["systemctl", "show", "inspectd-publish", "--property=NRestarts"]).stdout.strip() == "NRestarts=1"
             and box.run(["systemctl", "is-active", "inspectd-publish"], check=False).stdout.strip() == "active", "the restart")
    owner = box.run(["stat", "-c", "%U %a", "/var/lib/inspectd-publish/position.json"]).stdout.split()
    assert owner[0] == "inspectd-publish"
    # The station killed: no stop record of its own; systemd's failure record makes the state "stopped", then it starts again.
    box.run(["systemctl", "kill", "--signal=SIGKILL", "inspectd.service"])
    later = received(box, 12)
    frames = [body["frame"] for topic, body in later if topic.endswith("/verdict")]
    events = [body for topic, body in later if topic.endswith("/event")]
    states = [body["state"] for topic, body in later if topic.endswith("/state")]
    assert any(event["kind"] == "service-failed" and event["unit"] == "inspectd.service" for event in events), events
    assert "stopped" in states and states[-1] == "judging", states
    # Nothing lost across the kill of the publisher: the first process's frames go on without a hole.
    numbers = sorted({(body["pid"], body["frame"]) for topic, body in [*[("v", b) for b in first], *[(t, b) for t, b in later
                      if t.endswith("/verdict")]]})
    first_pid = numbers[0][0]
    run = [frame for pid, frame in numbers if pid == first_pid]
    assert run == list(range(run[0], run[-1] + 1)) and run[0] == 1, run[:10]
    assert frames, "verdicts after the kills"


def journal_records(box: Container) -> list[dict]:
    """The station's records of every boot in the container's persistent journal, oldest first."""
    out = box.run(["journalctl", "--no-pager", "-o", "json", "_SYSTEMD_UNIT=inspectd.service"], timeout=120).stdout
    return [record for line in out.splitlines() if (record := json.loads(line)).get("MESSAGE_ID") in KINDS]


def record_id(record: dict) -> str:
    """The idempotency key a journal record must arrive with (README, "Topics")."""
    kind = KINDS[record["MESSAGE_ID"]]
    prefix = f"station-p/{record['_BOOT_ID']}/{record['_PID']}"
    return f"{prefix}/{record['INSPECTD_FRAME']}" if kind is RecordKind.VERDICT else f"{prefix}/{kind}@{record['__MONOTONIC_TIMESTAMP']}"


def test_publishing_resumes_from_its_position_across_a_reboot(station: Container):
    box = station
    received(box, 1)  # the subscriber's session: the broker queues for it, and keeps the queue across its restart
    box.run(["systemctl", "enable", "inspectd.service", "inspectd-publish.service"])  # as on a plant: both start at boot
    assert box.run(["systemctl", "start", "inspectd.service", "inspectd-publish.service"], check=False, timeout=180).returncode == 0
    arrived = [(topic, body) for topic, body in received(box, 4)]
    assert any(topic.endswith("/verdict") for topic, _ in arrived), box.run(["journalctl", "--no-pager", "-u", "inspectd-publish"]).stdout
    # The broker stops: what the station writes from now on waits in the journal, unacknowledged, until after the reboot.
    box.run(["systemctl", "stop", "mosquitto"])
    wait_for(lambda: "connection was lost" in box.run(["journalctl", "--no-pager", "-u", "inspectd-publish"]).stdout, "the publisher's word")
    verdicts = lambda: len([r for r in journal_records(box) if KINDS[r["MESSAGE_ID"]] is RecordKind.VERDICT])  # noqa: E731
    written = verdicts()  # the broker has acknowledged none written from now on
    wait_for(lambda: verdicts() >= written + 20, "verdicts written while the broker is away")
    before = box.run(["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()

    box.reboot()
    assert box.run(["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip() != before
    position = json.loads(box.run(["cat", "/var/lib/inspectd-publish/position.json"]).stdout)
    assert position["boot"] == before.replace("-", ""), position  # saved at the stop, in the previous boot
    unpublished = [r for r in journal_records(box) if r["_BOOT_ID"] == position["boot"] and KINDS[r["MESSAGE_ID"]] is RecordKind.VERDICT
                   and int(r["INSPECTD_FRAME"]) > position["frame"]]
    frames_before = [(r["_PID"], r["INSPECTD_FRAME"]) for r in journal_records(box) if r["_BOOT_ID"] == position["boot"]
                     and KINDS[r["MESSAGE_ID"]] is RecordKind.VERDICT]
    assert len(unpublished) >= 20, (position, frames_before[-30:], box.run(["journalctl", "--no-pager", "-b", "-1", "-u", "inspectd-publish",
                                                                        "-u", "mosquitto", "-o", "short-precise"]).stdout[-5000:])
    wait_for(lambda: box.run(["systemctl", "is-active", "inspectd.service", "inspectd-publish.service", "mosquitto"],
                             check=False).stdout.split() == ["active"] * 3, "the services started at boot")
    said = box.run(["journalctl", "--no-pager", "-b", "0", "-u", "inspectd-publish", "-o", "cat"]).stdout
    assert f"resuming after the record of {position['time']} (boot {position['boot'][:8]})" in said, said
    arrived += received(box, 6)
    box.run(["systemctl", "stop", "inspectd.service"], timeout=60)
    expected = [record_id(record) for record in journal_records(box)]
    assert {record["_BOOT_ID"] for record in journal_records(box)} == {position["boot"], box.run(["cat", "/proc/sys/kernel/random/boot_id"])
                                                                       .stdout.strip().replace("-", "")}
    wanted = set(expected)

    def everything() -> bool:
        arrived.extend(received(box, 3))
        return wanted <= {body["id"] for _, body in arrived if isinstance(body, dict) and "id" in body}

    wait_for(everything, "every record of both boots", timeout=180)
    ids = [body["id"] for _, body in arrived if isinstance(body, dict) and body.get("id") in wanted]
    firsts = list(dict.fromkeys(ids))
    assert firsts == expected, "first arrivals in journal order, across the boots"
    print(box.run(["journalctl", "--no-pager", "-u", "inspectd-publish", "-o", "short-precise"]).stdout[-4000:])
    print(f"{len(expected)} records over two boots ({len(unpublished)} verdicts of the first written after its last acknowledged one), "
          f"{len(ids)} messages ({len(ids) - len(firsts)} duplicates)")
