"""The publisher's figures on this machine, inside a private journald with a real Mosquitto (TLS, password), as
tests/integration/test_publish.py runs them (needs root):

    sudo .venv/bin/python bench/publish.py [--backlog 20000] [--seconds 20] [--station-frames 400] [--rounds 2] [--json out.json]

1. throughput: a backlog of verdict records (written while no publisher runs) published to the broker, first to last
   delivery; against the journal reader alone on the same records (the same run's baseline), and against 50 frames/s;
2. delay from the verdict record (journald's receive time) to its delivery at the subscriber, median and p99, with
   records written at 20 and 50 frames/s; in frame periods too;
3. the station slowed by the publisher: the demo station at full rate for N frames, alternately without and with a
   publisher following it (rounds A B A B ...); its own frames/s from its records, the ratio with/without.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from inspectd.daemon.records import MESSAGE_IDS, RecordKind
from inspectd.testing.journald import private_journald
from inspectd.testing.mosquitto import Subscriber, mosquitto

ROOT = Path(__file__).resolve().parents[1]
VERDICT = MESSAGE_IDS[RecordKind.VERDICT]

WRITER = r"""
import sys, time
from systemd import journal
from inspectd.daemon.records import MESSAGE_IDS, RecordKind, VerdictRecord
count, rate = int(sys.argv[1]), float(sys.argv[2])
start = time.monotonic()
for frame in range(1, count + 1):
    record = VerdictRecord(frame=frame, verdict="REJECT" if frame % 20 == 0 else "PASS", score=float(frame % 9), threshold=6.5,
                           latency_ms=30.0, model="ab" * 32, source=f"part-{frame}.png", precision="f32")
    journal.send(record.message(), MESSAGE_ID=MESSAGE_IDS[RecordKind.VERDICT], SYSLOG_IDENTIFIER="inspectd", **record.fields())
    if rate:
        time.sleep(max(0.0, start + frame / rate - time.monotonic()))
"""

READER = r"""
import time
from inspectd.daemon.publish.journal import StationJournal
journal = StationJournal("inspectd.service")
journal.start("boot")
start, count = time.perf_counter(), 0
while journal.next() is not None:
    count += 1
print(count, time.perf_counter() - start)
"""


def config(folder: Path, broker, station: str, first_start: str = "boot") -> Path:
    (folder / "password").write_text(broker.password + "\n")
    (folder / "state").mkdir(exist_ok=True)
    path = folder / "publish.toml"
    path.write_text(f'station = "{station}"\nfirst_start = "{first_start}"\n[mqtt]\nhost = "localhost"\nport = {broker.tls_port}\n'
                    f'username = "{broker.username}"\npassword_file = "{folder / "password"}"\ntls_ca_file = "{broker.ca}"\n'
                    "[metrics]\nenabled = false\n")
    return path


def publisher(jd, path: Path) -> subprocess.Popen:
    return jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "publish", "--config", str(path), "--state-dir",
                          str(path.parent / "state")], stderr=subprocess.DEVNULL)


def verdicts(subscriber: Subscriber, station: str) -> list:
    return subscriber.on(f"/{station}/verdict")


def throughput(jd, broker, work: Path, backlog: int) -> dict:
    jd.run_inside([sys.executable, "-c", WRITER, str(backlog), "0"], unit="inspectd.service").wait()
    jd.sync()
    reader = jd.run_inside([sys.executable, "-c", READER], stdout=subprocess.PIPE, text=True)
    count, seconds = reader.communicate()[0].split()
    read_rate = int(count) / float(seconds)
    subscriber = Subscriber(broker, "inspectd/backlog/#", client_id="bench-backlog")
    proc = publisher(jd, config(work / "backlog", broker, "backlog"))
    subscriber.wait(lambda: len(verdicts(subscriber, "backlog")) >= backlog, timeout=600)
    proc.terminate()
    proc.wait()
    subscriber.close()
    got = verdicts(subscriber, "backlog")
    rate = (len(got) - 1) / (got[-1].at - got[0].at)
    return {"records": backlog, "delivered": len(got), "publisher_per_s": round(rate), "reader_alone_per_s": round(read_rate),
            "publisher_over_reader": round(rate / read_rate, 3), "publisher_over_50_fps": round(rate / 50, 1)}


def delay(jd, broker, work: Path, rate: float, seconds: float) -> dict:
    station = f"rate{int(rate)}"
    (work / station).mkdir()
    subscriber = Subscriber(broker, f"inspectd/{station}/#", client_id=f"bench-{station}")
    proc = publisher(jd, config(work / station, broker, station, first_start="now"))
    subscriber.wait(lambda: subscriber.on("/availability"), timeout=60)
    time.sleep(1.0)
    count = int(rate * seconds)
    jd.run_inside([sys.executable, "-c", WRITER, str(count), str(rate)], unit="inspectd.service").wait()
    subscriber.wait(lambda: len(verdicts(subscriber, station)) >= count, timeout=120)
    proc.terminate()
    proc.wait()
    subscriber.close()
    delays = sorted((m.at - datetime.fromisoformat(json.loads(m.payload)["time"]).timestamp()) * 1000 for m in verdicts(subscriber, station))
    p50, p99 = statistics.median(delays), delays[min(len(delays) - 1, int(0.99 * len(delays)))]
    period = 1000 / rate
    return {"frames_per_s": rate, "records": len(delays), "median_ms": round(p50, 2), "p99_ms": round(p99, 2), "max_ms": round(delays[-1], 2),
            "median_in_frame_periods": round(p50 / period, 3), "p99_in_frame_periods": round(p99 / period, 3)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cgroup_cpu_seconds(jd) -> float:
    stat = (jd._unit_cgroup("inspectd.service") / "cpu.stat").read_text()
    return int(next(line.split()[1] for line in stat.splitlines() if line.startswith("usage_usec"))) / 1e6


def station_rate(jd, work: Path, images: Path, frames: int, with_publisher: Path | None) -> tuple[float, float, float]:
    """The station's frames/s, its CPU seconds, and the publisher's CPU seconds meanwhile (0 without one)."""
    config_path = work / "station.toml"
    config_path.write_text(f'[model]\npath = "{ROOT / "models" / "demo-mug"}"\n[source]\nkind = "directory"\npath = "{images}"\n'
                           'mode = "loop"\n[journal]\nlog = "all"\n[archive]\nenabled = false\n')
    follower = publisher(jd, with_publisher) if with_publisher else None
    if follower is not None:
        time.sleep(3.0)  # imported and connected: its start-up is not the station's cost
    follower_cpu = cpu_seconds(follower.pid) if follower is not None else 0.0
    station_cpu = cgroup_cpu_seconds(jd)
    station = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config_path), "--frames", str(frames)],
                            unit="inspectd.service", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    station.wait()
    station_cpu = cgroup_cpu_seconds(jd) - station_cpu
    if follower is not None:
        time.sleep(1.0)
        follower_cpu = cpu_seconds(follower.pid) - follower_cpu
        follower.terminate()
        follower.wait()
    records = jd.read_records(MESSAGE_ID=VERDICT)[-frames:]  # runs one after the other: the last N verdicts are this run's
    first, last = int(records[0]["__MONOTONIC_TIMESTAMP"]), int(records[-1]["__MONOTONIC_TIMESTAMP"])
    return (len(records) - 1) / ((last - first) / 1e6), station_cpu, follower_cpu


def slowdown(jd, broker, work: Path, frames: int, rounds: int) -> dict:
    from inspectd.daemon.demo.scene import generate_station_dataset

    data = generate_station_dataset(work / "demo", n_train=0, n_test_good=4, n_test_per_size=1)
    images = work / "images"
    images.mkdir()
    for image in sorted((data / "test").glob("*/*.png")):
        shutil.copy(image, images / f"{image.parent.name}_{image.name}")
    (work / "follow").mkdir()
    follow = config(work / "follow", broker, "follow", first_start="now")
    alone, followed, cpu = [], [], []
    for _ in range(rounds):
        alone.append(station_rate(jd, work, images, frames, None)[0])
        rate, station_cpu, publisher_cpu = station_rate(jd, work, images, frames, follow)
        followed.append(rate)
        cpu.append(publisher_cpu / station_cpu)
    a, f = statistics.median(alone), statistics.median(followed)
    return {"frames_per_run": frames, "rounds": rounds, "alone_frames_per_s": [round(x, 2) for x in alone],
            "with_publisher_frames_per_s": [round(x, 2) for x in followed], "with_over_alone": round(f / a, 4),
            "slowdown_percent": round((1 - f / a) * 100, 2),
            # CPU time is what the publisher takes from the station on a busy machine, and it does not depend on the load
            "publisher_cpu_over_station_cpu": [round(x, 4) for x in cpu]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=20.0, help="records written at each rate, in seconds")
    parser.add_argument("--station-frames", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inspectd-bench-publish-"))
    results: dict = {}
    try:
        with mosquitto(work) as broker, private_journald(work) as jd:
            (work / "backlog").mkdir()
            results["throughput"] = throughput(jd, broker, work, args.backlog)
            print(f"throughput: {results['throughput']}", flush=True)
            results["delay"] = [delay(jd, broker, work, rate, args.seconds) for rate in (20.0, 50.0)]
            for row in results["delay"]:
                print(f"delay: {row}", flush=True)
            results["station"] = slowdown(jd, broker, work, args.station_frames, args.rounds)
            print(f"station: {results['station']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
