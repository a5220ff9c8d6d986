"""A fleet's journals in one place with journald's own forwarding: two station containers and one collector, booted
with systemd-nspawn on a private network zone of their own (no other network). Each station is the inspectd package
(installed with apt, as on a Pi) running the demo station on its own images, plus systemd-journal-upload; the
collector runs systemd-journal-remote (Debian's systemd-journal-remote package, its .debs fetched once on the host
with apt and installed offline in the containers). ``inspectd report --directory /var/log/journal/remote`` on the
collector then prints each station's figures and the fleet's total, which must equal what each station's own journal
says.

The README's setup uses HTTPS with certificates between the stations and the collector; this test uses plain HTTP
on a network that only these containers share.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import DEMO_MODEL
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.testing.nspawn import DEFAULT_ROOT, Container, booted_container, unavailable_reason

_reason = unavailable_reason(DEFAULT_ROOT)
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"nspawn container unavailable: {_reason}")

VERDICT = "5a01ba8d9a354266b5189ac90117b557"
REMOTE = "/var/log/journal/remote"
COLLECTOR_ADDRESS = "10.231.7.1"
STATIONS = {"station-a": ("10.231.7.11", 7), "station-b": ("10.231.7.12", 4)}  # host name: (address, images it inspects)
DEBS = Path(os.environ.get("INSPECTD_CI_CACHE", "/var/cache/inspectd-ci")) / "journal-remote-debs"


@pytest.fixture(scope="module")
def journal_remote_debs() -> Path:
    """systemd-journal-remote and what it needs beyond the container root's packages, fetched once with the host's apt
    (the root's dpkg status says what is there already), cached in $INSPECTD_CI_CACHE/journal-remote-debs."""
    if not any(DEBS.glob("systemd-journal-remote_*.deb")):
        DEBS.mkdir(parents=True, exist_ok=True)
        (DEBS / "partial").mkdir(exist_ok=True)
        fetch = subprocess.run(["apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends",
                                f"-o=Dir::State::status={DEFAULT_ROOT}/var/lib/dpkg/status", f"-o=Dir::Cache::archives={DEBS}",
                                "systemd-journal-remote"], capture_output=True, text=True)
        if fetch.returncode != 0 or not any(DEBS.glob("systemd-journal-remote_*.deb")):
            pytest.skip(f"cannot fetch systemd-journal-remote's packages with apt: {fetch.stderr.strip()[-300:]}")
    return DEBS


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """The demo station's test images, a folder per station (each inspects its own number of them once)."""
    folder = tmp_path_factory.mktemp("fleet-images")
    data = generate_station_dataset(folder / "data", n_train=0, n_test_good=4, n_test_per_size=2)
    pictures = sorted((data / "test").glob("*/*.png"))
    for name, (_, count) in STATIONS.items():
        (folder / name).mkdir()
        for image in pictures[:count]:
            shutil.copy(image, folder / name / f"{image.parent.name}_{image.name}")
    shutil.copytree(DEMO_MODEL, folder / "model")
    return folder


def network(box: Container, name: str, address: str) -> None:
    """The container's host name and its address on the zone (systemd-networkd, in the root already)."""
    box.run(["python3", "-c", f"import socket; socket.sethostname({name!r})"])
    box.write_file("/etc/hostname", name + "\n")
    # 10-: before the root's own 80-container-host0.network (DHCP), which would otherwise match host0 first
    box.write_file("/etc/systemd/network/10-fleet.network", f"[Match]\nName=host0\n\n[Network]\nAddress={address}/24\nLinkLocalAddressing=no\n")
    box.run(["systemctl", "restart", "systemd-networkd"])
    box.run(["systemctl", "restart", "systemd-journald"])  # records carry the new host name from here on


def install(box: Container, *debs: str) -> None:
    box.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *debs], timeout=300)


def station_toml(images: str) -> str:
    return (f'[model]\npath = "/var/lib/inspectd/model"\n\n[source]\nkind = "directory"\npath = "{images}"\nmode = "once"\n\n'
            '[journal]\nlog = "all"\n\n[archive]\nenabled = true\n')


def remote_verdicts(collector: Container) -> dict[str, int]:
    out = collector.run(["journalctl", "--no-pager", "-D", REMOTE, "-o", "json", f"MESSAGE_ID={VERDICT}"], check=False).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        if line.strip():
            host = json.loads(line).get("_HOSTNAME", "?")
            counts[host] = counts.get(host, 0) + 1
    return counts


def test_two_stations_one_collector_one_report(amd64_package: Path, journal_remote_debs: Path, images: Path):
    zone = f"ifl{uuid.uuid4().hex[:6]}"  # a network zone of this test's own (bridge vz-<zone>), gone with the containers
    binds = [(amd64_package.parent, "/mnt/deb"), (journal_remote_debs, "/mnt/journal-remote"), (images, "/mnt/images")]
    remote_debs = [f"/mnt/journal-remote/{deb.name}" for deb in sorted(journal_remote_debs.glob("*.deb"))]
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: subprocess.run(["ip", "link", "del", f"vz-{zone}"], capture_output=True))  # if nspawn left it
        boxes = {name: stack.enter_context(booted_container(DEFAULT_ROOT, binds_ro=binds, extra_args=[f"--network-zone={zone}"]))
                 for name in ("collector", *STATIONS)}
        # nspawn makes the zone's bridge on the host; with no systemd-networkd there to configure it, it stays down.
        subprocess.run(["ip", "link", "set", "dev", f"vz-{zone}", "up"], check=True)
        collector = boxes["collector"]
        network(collector, "collector", COLLECTOR_ADDRESS)
        install(collector, f"/mnt/deb/{amd64_package.name}", *remote_debs)
        # journal-remote's packaged unit listens for HTTPS with certificates; the test's zone is private: plain HTTP.
        collector.write_file("/etc/systemd/system/systemd-journal-remote.service.d/50-test.conf",
                             "[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-journal-remote --listen-http=-3 "
                             f"--output={REMOTE}/\n")
        collector.run(["mkdir", "-p", REMOTE])
        collector.run(["chown", "systemd-journal-remote:systemd-journal-remote", REMOTE])
        collector.run(["systemctl", "daemon-reload"])
        collector.run(["systemctl", "start", "systemd-journal-remote.socket"])

        for name, (address, _) in STATIONS.items():
            box = boxes[name]
            network(box, name, address)
            install(box, f"/mnt/deb/{amd64_package.name}", *remote_debs)
            box.write_file("/etc/systemd/journal-upload.conf", f"[Upload]\nURL=http://{COLLECTOR_ADDRESS}:19532\n")
            box.run(["systemctl", "start", "systemd-journal-upload.service"])
            box.run(["cp", "-r", "/mnt/images/model", "/var/lib/inspectd/model"])
            box.run(["cp", "-r", f"/mnt/images/{name}", "/srv/images"])
            box.run(["chmod", "-R", "a+rX", "/var/lib/inspectd", "/srv/images"])
            box.write_file("/etc/inspectd/inspectd.toml", station_toml("/srv/images"))
            started = box.run(["systemctl", "start", "inspectd.service"], check=False, timeout=180)
            assert started.returncode == 0, started.stderr + box.run(["journalctl", "--no-pager", "-u", "inspectd"], check=False).stdout

        wanted = {name: count for name, (_, count) in STATIONS.items()}
        deadline = time.monotonic() + 180
        while (counts := remote_verdicts(collector)) != wanted:
            if time.monotonic() > deadline:
                logs = {name: boxes[name].run(["journalctl", "--no-pager", "-u", "systemd-journal-upload", "-n", "20"], check=False).stdout
                        for name in STATIONS}
                raise AssertionError(f"the collector has {counts}, wanted {wanted}; upload logs: {logs}")
            time.sleep(1)

        own = {name: json.loads(boxes[name].run(["inspectd", "report", "--json", "--model", "/var/lib/inspectd/model"]).stdout)
               for name in STATIONS}
        fleet_json = json.loads(collector.run(["inspectd", "report", "--json", "--directory", REMOTE]).stdout)
        fleet_text = collector.run(["inspectd", "report", "--directory", REMOTE]).stdout

    print(fleet_text)
    assert set(fleet_json["stations"]) == set(STATIONS), fleet_json["stations"].keys()
    for name, count in wanted.items():
        collected = fleet_json["stations"][name]
        assert collected["frames"] == own[name]["frames"] == count
        assert collected["rejects"] == own[name]["rejects"]
        assert collected["faults"] == own[name]["faults"]
    assert fleet_json["frames"] == sum(wanted.values())
    assert fleet_json["rejects"] == sum(own[name]["rejects"] for name in STATIONS)
    assert "2 stations" in fleet_text and "fleet total" in fleet_text
    for name, count in wanted.items():
        row = next(line for line in fleet_text.splitlines() if line.startswith(name))
        assert row.split()[1] == str(count)
    total = next(line for line in fleet_text.splitlines() if line.startswith("fleet total"))
    assert total.split()[2] == str(sum(wanted.values()))
