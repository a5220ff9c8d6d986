"""The publisher's figures on this machine, inside a private journald with a real Mosquitto (TLS, password), as
tests/integration/test_publish.py runs them (needs root):

    sudo .venv/bin/python bench/publish.py [--backlog 20000] [--seconds 20] [--station-frames 1000] [--rounds 8] [--json out.json]

1. throughput (the publisher at the default priority: what the code costs): a backlog of verdict records (written while no publisher runs) published to the broker, first to last
   delivery; against the journal reader alone on the same records (the same run's baseline), and against 50 frames/s;
2. delay from the verdict record (journald's receive time) to its delivery at the subscriber, median and p99, with
   records written at 20 and 50 frames/s; in frame periods too; at the default priority and as the unit runs it (on a
   machine whose CPUs other jobs keep busy, the second is what the yielding costs in delay);
3. the station slowed by the publisher, side by side: the demo station at full rate for N frames, without and with a
   publisher following it, in interleaved pairs whose order alternates (A B, B A, A B, ...) so the machine's other
   load falls on both alike; the station's own frames/s from its records, each pair's ratio with/without and their
   median; the publisher's CPU time over the station's in each "with" run (after it delivered every verdict of the
   run, so none of its work is left out); the machine's load average and busy share of its CPUs during the rounds;
4. (--toggle-windows N) the same question with a finer interleave: one long station run while a publisher follows it,
   stopped (SIGSTOP) and continued (SIGCONT) every --window-s seconds; the station's frames in each window from its
   records' monotonic times; each "on" window against the "off" windows either side of it (a paired statistic whose
   neighbours share the machine's load), their median and a bootstrap 95% interval of the mean. The publisher does in
   each "on" window the work of two (the records of the "off" window before it too): the slowdown measured is that of
   twice its steady load, and half of it is the estimate.

Except where said, the publisher runs as inspectd-publish.service runs it: niceness 19, idle I/O class, and a CPU cgroup of
weight 1 against the station's 100 (cgroup v2 cpu.weight, or cgroup v1 cpu.shares 10 against 1024, whichever
hierarchy holds the cpu controller here; said in the results).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
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


def config(folder: Path, broker, station: str, first_start: str = "boot", metrics: str | None = None) -> Path:
    (folder / "password").write_text(broker.password + "\n")
    (folder / "state").mkdir(exist_ok=True)
    path = folder / "publish.toml"
    path.write_text(f'station = "{station}"\nfirst_start = "{first_start}"\n[mqtt]\nhost = "localhost"\nport = {broker.tls_port}\n'
                    f'username = "{broker.username}"\npassword_file = "{folder / "password"}"\ntls_ca_file = "{broker.ca}"\n'
                    + (f'[metrics]\nlisten = "{metrics}"\n' if metrics else "[metrics]\nenabled = false\n"))
    return path


NICE = ["nice", "-n", "19", "ionice", "-c", "3"]  # the unit's Nice=19, IOSchedulingClass=idle
CPU_V1 = Path("/sys/fs/cgroup/cpu")  # a hybrid host's cgroup v1 cpu controller


def publisher(jd, path: Path, yielding: bool = True) -> subprocess.Popen:
    """A publisher started as the unit starts it: niceness 19, idle I/O, in a cgroup of its own of CPU weight 1; or, not
    ``yielding``, at the default priority (what the code costs, apart from what the machine's other load leaves it)."""
    if not yielding:
        return jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "publish", "--config", str(path), "--state-dir",
                              str(path.parent / "state")], stderr=subprocess.DEVNULL)
    proc = jd.run_inside([*NICE, sys.executable, "-m", "inspectd.daemon.cli", "publish", "--config", str(path), "--state-dir",
                          str(path.parent / "state")], unit="inspectd-publish.service", stderr=subprocess.DEVNULL)
    weigh(jd, proc.pid)
    return proc


def weigh(jd, pid: int) -> str:
    """The unit's CPUWeight=1 (inspectd.service keeps the default 100), on whichever hierarchy has the cpu controller."""
    unified = jd._unit_cgroup("inspectd-publish.service")
    if (unified / "cpu.weight").exists():
        (unified / "cpu.weight").write_text("1")
        return "cgroup v2 cpu.weight 1 (the station's 100)"
    try:
        (unified.parent / "cgroup.subtree_control").write_text("+cpu")
        (unified / "cpu.weight").write_text("1")
        return "cgroup v2 cpu.weight 1 (the station's 100)"
    except OSError:
        pass
    if (CPU_V1 / "cpu.shares").exists():
        group = CPU_V1 / "inspectd-bench-publish"
        group.mkdir(exist_ok=True)
        (group / "cpu.shares").write_text("10")
        (group / "cgroup.procs").write_text(str(pid))
        return "cgroup v1 cpu.shares 10 (the station's 1024)"
    return "no CPU weight (no cpu controller available): niceness 19 only"


def machine_cpu() -> tuple[int, int]:
    """All CPUs' busy and total jiffies since boot (/proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def verdicts(subscriber: Subscriber, station: str) -> list:
    return subscriber.on(f"/{station}/verdict")


def throughput(jd, broker, work: Path, backlog: int) -> dict:
    jd.run_inside([sys.executable, "-c", WRITER, str(backlog), "0"], unit="inspectd.service").wait()
    jd.sync()
    reader = jd.run_inside([sys.executable, "-c", READER], stdout=subprocess.PIPE, text=True)
    count, seconds = reader.communicate()[0].split()
    read_rate = int(count) / float(seconds)
    subscriber = Subscriber(broker, "inspectd/backlog/#", client_id="bench-backlog")
    proc = publisher(jd, config(work / "backlog", broker, "backlog"), yielding=False)
    subscriber.wait(lambda: len(verdicts(subscriber, "backlog")) >= backlog, timeout=600)
    proc.terminate()
    proc.wait()
    subscriber.close()
    got = verdicts(subscriber, "backlog")
    rate = (len(got) - 1) / (got[-1].at - got[0].at)
    return {"records": backlog, "delivered": len(got), "publisher_per_s": round(rate), "reader_alone_per_s": round(read_rate),
            "publisher_over_reader": round(rate / read_rate, 3), "publisher_over_50_fps": round(rate / 50, 1)}


def delay(jd, broker, work: Path, rate: float, seconds: float, yielding: bool) -> dict:
    station = f"rate{int(rate)}{'-yielding' if yielding else ''}"
    (work / station).mkdir()
    subscriber = Subscriber(broker, f"inspectd/{station}/#", client_id=f"bench-{station}")
    proc = publisher(jd, config(work / station, broker, station, first_start="now"), yielding)
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
    return {"frames_per_s": rate, "priority": "as the unit (niceness 19, CPU weight 1)" if yielding else "default",
            "records": len(delays), "median_ms": round(p50, 2), "p99_ms": round(p99, 2), "max_ms": round(delays[-1], 2),
            "median_in_frame_periods": round(p50 / period, 3), "p99_in_frame_periods": round(p99 / period, 3)}


def cgroup_cpu_seconds(jd, unit: str = "inspectd.service") -> float:
    stat = (jd._unit_cgroup(unit) / "cpu.stat").read_text()
    return int(next(line.split()[1] for line in stat.splitlines() if line.startswith("usage_usec"))) / 1e6


def station_rate(jd, broker, work: Path, images: Path, frames: int, with_publisher: Path | None) -> dict:
    """One run of the station: its frames/s and CPU seconds; with a publisher, the publisher's CPU seconds meanwhile
    (until it delivered the run's last verdict) and its delay; the machine's busy share of its CPUs meanwhile."""
    config_path = work / "station.toml"
    config_path.write_text(f'[model]\npath = "{ROOT / "models" / "demo-mug"}"\n[source]\nkind = "directory"\npath = "{images}"\n'
                           'mode = "loop"\n[journal]\nlog = "all"\n[archive]\nenabled = false\n')
    follower = subscriber = None
    if with_publisher is not None:
        shutil.rmtree(with_publisher.parent / "state", ignore_errors=True)  # first_start = "now": this run's records only
        (with_publisher.parent / "state").mkdir()
        subscriber = Subscriber(broker, "inspectd/follow/#", client_id=f"bench-follow-{time.monotonic_ns()}")
        follower = publisher(jd, with_publisher)
        subscriber.wait(lambda: subscriber.on("/availability"), timeout=60)
        time.sleep(2.0)  # imported and connected: its start-up is not the station's cost
    follower_cpu = cgroup_cpu_seconds(jd, "inspectd-publish.service") if follower is not None else 0.0
    station_cpu = cgroup_cpu_seconds(jd)
    busy, total = machine_cpu()
    station = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config_path), "--frames", str(frames)],
                            unit="inspectd.service", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, 0))  # the station at the default priority
    station.wait()
    station_cpu = cgroup_cpu_seconds(jd) - station_cpu
    busy_after, total_after = machine_cpu()
    result = {"station_cpu_s": station_cpu, "machine_busy": (busy_after - busy) / (total_after - total)}
    if follower is not None and subscriber is not None:
        caught_up = subscriber.wait(lambda: len(verdicts(subscriber, "follow")) >= frames, timeout=120)
        result["publisher_cpu_s"] = cgroup_cpu_seconds(jd, "inspectd-publish.service") - follower_cpu
        follower.terminate()
        follower.wait()
        subscriber.close()
        got = verdicts(subscriber, "follow")
        delays = sorted((m.at - datetime.fromisoformat(json.loads(m.payload)["time"]).timestamp()) * 1000 for m in got)
        result.update(delivered=len(got), caught_up=bool(caught_up), delay_median_ms=statistics.median(delays) if delays else None,
                      delay_p99_ms=delays[min(len(delays) - 1, int(0.99 * len(delays)))] if delays else None)
    records = jd.read_records(MESSAGE_ID=VERDICT)[-frames:]  # runs one after the other: the last N verdicts are this run's
    first, last = int(records[0]["__MONOTONIC_TIMESTAMP"]), int(records[-1]["__MONOTONIC_TIMESTAMP"])
    result["frames_per_s"] = (len(records) - 1) / ((last - first) / 1e6)
    return result


def demo_images(work: Path) -> Path:
    from inspectd.daemon.demo.scene import generate_station_dataset

    images = work / "images"
    if not images.exists():
        data = generate_station_dataset(work / "demo", n_train=0, n_test_good=4, n_test_per_size=1)
        images.mkdir()
        for image in sorted((data / "test").glob("*/*.png")):
            shutil.copy(image, images / f"{image.parent.name}_{image.name}")
    return images


def toggled(jd, broker, work: Path, windows: int, window_s: float) -> dict:
    import random

    images = demo_images(work)
    folder = work / "toggle"
    folder.mkdir()
    follow = config(folder, broker, "toggle", first_start="now", metrics=f"127.0.0.1:{free_port()}")
    if broker.proc is not None:
        os.setpriority(os.PRIO_PROCESS, broker.proc.pid, 19)
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    config_path = work / "toggle-station.toml"
    config_path.write_text(f'[model]\npath = "{ROOT / "models" / "demo-mug"}"\n[source]\nkind = "directory"\npath = "{images}"\n'
                           'mode = "loop"\n[journal]\nlog = "all"\n[archive]\nenabled = false\n')
    subscriber = Subscriber(broker, "inspectd/toggle/#", client_id="bench-toggle")
    follower = publisher(jd, follow)
    subscriber.wait(lambda: subscriber.on("/availability"), timeout=60)
    started = time.monotonic()
    station = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config_path)], unit="inspectd.service",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, 0))
    jd.wait_for_records(1, timeout=120, MESSAGE_ID=VERDICT)
    time.sleep(2.0)  # past the station's start
    load_before = os.getloadavg()
    bounds, on = [], []
    for number in range(windows):
        running = number % 2 == 0
        follower.send_signal(signal.SIGCONT if running else signal.SIGSTOP)
        bounds.append(time.monotonic())
        on.append(running)
        time.sleep(window_s)
    bounds.append(time.monotonic())
    follower.send_signal(signal.SIGCONT)
    load_after = os.getloadavg()
    station.terminate()
    station.wait()
    times = sorted(t for r in jd.read_records(MESSAGE_ID=VERDICT) if (t := int(r["__MONOTONIC_TIMESTAMP"]) / 1e6) >= started)
    caught_up = subscriber.wait(lambda: len(verdicts(subscriber, "toggle")) >= len(times), timeout=120)
    follower.terminate()
    follower.wait()
    subscriber.close()
    counts = [sum(1 for t in times if start <= t < end) for start, end in zip(bounds, bounds[1:])]
    # Each "on" window against the mean of its two "off" neighbours.
    ratios = [counts[i] / ((counts[i - 1] + counts[i + 1]) / 2) for i in range(1, windows - 1) if on[i] and counts[i - 1] + counts[i + 1]]
    chance = random.Random(1)
    means = sorted(statistics.fmean(chance.choices(ratios, k=len(ratios))) for _ in range(2000))
    mean = statistics.fmean(ratios)
    return {"windows": windows, "window_s": window_s, "frames_per_window": counts, "on_over_neighbours": [round(x, 4) for x in ratios],
            "on_over_neighbours_median": round(statistics.median(ratios), 4), "on_over_neighbours_mean": round(mean, 4),
            "mean_95_interval": [round(means[50], 4), round(means[1949], 4)],
            "steady_slowdown_percent_estimate": round((1 - mean) / 2 * 100, 2),
            "steady_slowdown_percent_95_interval": [round((1 - means[1949]) / 2 * 100, 2), round((1 - means[50]) / 2 * 100, 2)],
            "publisher_started_as": f"{' '.join(NICE)}; {weigh_note(jd)}", "caught_up": bool(caught_up),
            "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in load_after]}


def slowdown(jd, broker, work: Path, frames: int, rounds: int) -> dict:
    images = demo_images(work)
    (work / "follow").mkdir()
    # The packaged configuration's figures: metrics served too (a second reader of every record)
    follow = config(work / "follow", broker, "follow", first_start="now", metrics=f"127.0.0.1:{free_port()}")
    # On a plant the broker and its subscribers are other machines: here they run beside the station, so they yield to it
    # too (the broker, and this process whose threads, the subscriber's among them, inherit its niceness; the station is
    # started at the default one), and the comparison is the station against the publisher alone.
    if broker.proc is not None:
        os.setpriority(os.PRIO_PROCESS, broker.proc.pid, 19)
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    load_before = os.getloadavg()
    pairs = []
    for number in range(rounds):
        order = (None, follow) if number % 2 == 0 else (follow, None)  # A B, B A, ...: a trend in the load hits both alike
        runs = {("with" if path else "alone"): station_rate(jd, broker, work, images, frames, path) for path in order}
        pairs.append(runs)
        print(f"  round {number + 1}: alone {runs['alone']['frames_per_s']:.2f} frames/s, with {runs['with']['frames_per_s']:.2f}; "
              f"publisher CPU {runs['with']['publisher_cpu_s'] / runs['with']['station_cpu_s']:.2%} of the station's; "
              f"CPUs busy {runs['alone']['machine_busy']:.0%} / {runs['with']['machine_busy']:.0%}; load {os.getloadavg()[0]:.1f}",
              flush=True)
    load_after = os.getloadavg()
    ratios = [p["with"]["frames_per_s"] / p["alone"]["frames_per_s"] for p in pairs]
    shares = [p["with"]["publisher_cpu_s"] / p["with"]["station_cpu_s"] for p in pairs]
    alone = [p["alone"]["frames_per_s"] for p in pairs]
    followed = [p["with"]["frames_per_s"] for p in pairs]
    ratio = statistics.median(ratios)
    return {
        "frames_per_run": frames, "rounds": rounds, "publisher_started_as": f"{' '.join(NICE)}; {weigh_note(jd)}",
        "broker_and_subscriber": "niceness 19 (on a plant they are other machines)",
        "alone_frames_per_s": [round(x, 2) for x in alone], "with_publisher_frames_per_s": [round(x, 2) for x in followed],
        "with_over_alone_per_round": [round(x, 4) for x in ratios],
        "with_over_alone_median": round(ratio, 4), "slowdown_percent_median": round((1 - ratio) * 100, 2),
        "with_over_alone_of_medians": round(statistics.median(followed) / statistics.median(alone), 4),
        # CPU time is what the publisher takes from the station on a CPU-bound machine, whatever the other load
        "publisher_cpu_over_station_cpu_per_round": [round(x, 4) for x in shares],
        "publisher_cpu_over_station_cpu_median": round(statistics.median(shares), 4),
        "publisher_delay_median_ms_per_round": [round(p["with"]["delay_median_ms"], 1) for p in pairs],
        "publisher_delay_p99_ms_per_round": [round(p["with"]["delay_p99_ms"], 1) for p in pairs],
        "publisher_delivered_every_verdict": all(p["with"]["caught_up"] for p in pairs),
        "machine_cpus_busy_alone": [round(p["alone"]["machine_busy"], 3) for p in pairs],
        "machine_cpus_busy_with": [round(p["with"]["machine_busy"], 3) for p in pairs],
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weigh_note(jd) -> str:
    if (jd._unit_cgroup("inspectd-publish.service") / "cpu.weight").exists():
        return "cgroup v2 cpu.weight 1 (the station's 100)"
    if (CPU_V1 / "inspectd-bench-publish" / "cpu.shares").exists():
        return "cgroup v1 cpu.shares 10 (the station's 1024)"
    return "no CPU weight (no cpu controller available)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=20.0, help="records written at each rate, in seconds")
    parser.add_argument("--station-frames", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8, help="pairs of station runs, alone and with the publisher")
    parser.add_argument("--toggle-windows", type=int, default=0, help="4.: windows of a publisher stopped and continued (even)")
    parser.add_argument("--window-s", type=float, default=2.0)
    parser.add_argument("--only-toggle", action="store_true", help="run 4. alone")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inspectd-bench-publish-"))
    results: dict = {}
    try:
        with mosquitto(work) as broker, private_journald(work) as jd:
            if not args.only_toggle:
                (work / "backlog").mkdir()
                results["throughput"] = throughput(jd, broker, work, args.backlog)
                print(f"throughput: {results['throughput']}", flush=True)
                results["delay"] = [delay(jd, broker, work, rate, args.seconds, yielding) for yielding in (False, True)
                                    for rate in (20.0, 50.0)]
                for row in results["delay"]:
                    print(f"delay: {row}", flush=True)
                results["station"] = slowdown(jd, broker, work, args.station_frames, args.rounds)
                print(f"station: {results['station']}", flush=True)
            if args.toggle_windows:
                results["toggled"] = toggled(jd, broker, work, args.toggle_windows, args.window_s)
                print(f"toggled: {results['toggled']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            (CPU_V1 / "inspectd-bench-publish").rmdir()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
