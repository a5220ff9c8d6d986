"""What the station page costs: the live tap's share of the station's frame rate, and the page's memory.

    python bench/web_cost.py                    # --rounds 3 --frames 240 --seconds 20

1. The live tap. The station (the real loop: capture thread, demo model, decision, the outputs) inspects
   camera-sized frames (the demo scenes at 1536x864) from memory, in rounds that alternate the tap off,
   on at its default rate (2/s) and on at 10/s, all in this one process (a shared machine's noise hits
   them alike). Each round gives the frame rate between its first and last verdict and the process's CPU
   time a frame (every thread: the loop, capture, OpenVINO's and the tap's own); the figures are the medians
   per setting as ratios to the tap off. On a busy shared machine the frame rate follows the other tenants;
   the CPU time a frame follows the work, and a CPU-bound station's frame rate is its inverse. The tap also
   counts the CPU time its writer thread takes (``LiveTap.busy_s``): its share of the process's CPU time is
   the cost in frames when the station is CPU-bound, and the machine's other tenants hardly move it.
   The issue's bound: at the default rate, a frame-rate ratio >= 0.98 (a share <= 2%).
2. The page's memory. ``inspectd web`` follows a station that inspects flat out into a private journald
   (as root; otherwise an empty journal) with four browsers' worth of event streams open; its peak RSS
   (VmHWM) is printed against the 60 MB budget and against a bare Python with tornado imported (the floor).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "models" / "demo-mug"
RATES = (0.0, 2.0, 10.0)
WRITES: list[tuple[float, int]] = []  # (the tap writer's CPU seconds, frames written) of every round with the tap on
BUDGET_MB = 60.0


class Times:
    """An output that notes when each verdict came, and the process's CPU time then (every thread's)."""

    name = "times"

    def __init__(self) -> None:
        self.at: list[float] = []
        self.cpu: list[float] = []

    def verdict(self, verdict) -> None:
        self.at.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def event(self, kind, message, **fields) -> None:
        pass

    def close(self) -> None:
        pass


def demo_frames(work: Path, size: tuple[int, int] = (1536, 864)) -> list[np.ndarray]:
    from inspectd.daemon.demo.scene import generate_station_dataset

    data = generate_station_dataset(work / "data", n_train=0, n_test_good=6, n_test_per_size=2)
    return [cv2.resize(cv2.imread(str(p)), size, interpolation=cv2.INTER_LINEAR) for p in sorted((data / "test").glob("*/*.png"))]


def station_rate(frames: list[np.ndarray], rate_hz: float, count: int, live: Path) -> tuple[float, float, float]:
    """Frames a second between the first and the last verdict, CPU seconds a frame (all threads) over the same span, and the
    share of the process's CPU time the tap's writer thread took."""
    from inspectd.daemon.station.config import ArchiveConfig, Config, JournalConfig, LiveConfig, ModelConfig
    from inspectd.daemon.station.loop import Station
    from inspectd.daemon.station.sources import DirectoryConfig
    from inspectd.daemon.station.sources.memory import MemorySource

    config = Config(model=ModelConfig(path=str(DEMO_MODEL)), source=DirectoryConfig(path=".", mode="watch"),
                    journal=JournalConfig(enabled=False), archive=ArchiveConfig(enabled=False),
                    live=LiveConfig(path=str(live), rate_hz=rate_hz))
    times = Times()
    station = Station(config, frames=count, extra_outputs=[times], open_source=lambda _: MemorySource(frames, loop=True))
    station.run()
    seconds = times.at[-1] - times.at[0]
    taps = [output for output in station.pipeline.outputs if hasattr(output, "busy_s")]
    written = sum(tap.seq for tap in taps)
    share = sum(tap.busy_s for tap in taps) / max(times.cpu[-1] - times.cpu[0], 1e-9)
    WRITES.append((sum(tap.busy_s for tap in taps), written)) if rate_hz else None
    if rate_hz and written < min(rate_hz * seconds, count) / 2:
        raise SystemExit(f"the tap wrote {written} frames in {seconds:.1f} s at {rate_hz:g}/s")
    return (len(times.at) - 1) / seconds, (times.cpu[-1] - times.cpu[0]) / (len(times.cpu) - 1), share


def tap_cost(rounds: int, count: int) -> dict[float, list[tuple[float, float, float]]]:
    with tempfile.TemporaryDirectory() as work:
        frames = demo_frames(Path(work))
        station_rate(frames, 0.0, 20, Path(work) / "warm")  # OpenVINO's first compile and caches, outside the rounds
        measured: dict[float, list[tuple[float, float, float]]] = {rate: [] for rate in RATES}
        for round_ in range(rounds):
            order = RATES if round_ % 2 == 0 else tuple(reversed(RATES))
            for rate in order:
                measured[rate].append(station_rate(frames, rate, count, Path(work) / f"live-{round_}-{rate:g}"))
                fps, cpu, share = measured[rate][-1]
                print(f"  round {round_ + 1}: tap {'off' if rate == 0 else f'{rate:g}/s'}: {fps:.1f} frames/s, "
                      f"{cpu * 1000:.1f} CPU ms a frame, the tap's writer {share:.2%} of the CPU", flush=True)
    return measured


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def page_memory(seconds: float) -> dict[str, float]:
    from inspectd.testing.journald import private_journald, unavailable_reason

    floor = subprocess.run([sys.executable, "-c", "import tornado.web, tornado.httpserver\n"
                            "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"], capture_output=True, text=True)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        data = demo_frames(work, (480, 360))
        images = work / "images"
        images.mkdir()
        for index, frame in enumerate(data):
            cv2.imwrite(str(images / f"{index:03d}.png"), frame)
        station = work / "inspectd.toml"
        station.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{images}"\nmode = "loop"\n'
                           f'[archive]\npath = "{work / "rejects"}"\n[live]\npath = "{work / "live"}"\n')
        port = free_port()
        (work / "web.toml").write_text(f'port = {port}\nstation_config = "{station}"\n')
        reason = unavailable_reason()
        if reason is not None:
            print(f"  (no private journald: {reason}; the page follows an empty journal)")
            (work / "journal").mkdir()
            (work / "web.toml").write_text(f'port = {port}\nstation_config = "{station}"\njournal_directory = "{work / "journal"}"\n')
        records = 0
        with private_journald(work) if reason is None else _nothing() as jd:
            start = (lambda argv: jd.run_inside(argv, unit="inspectd.service" if "run" in argv else None,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)) if jd else (
                lambda argv: subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            runner = start([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(station)])
            page = start([sys.executable, "-m", "inspectd.daemon.cli", "web", "--config", str(work / "web.toml")])
            _wait_for(port)
            streams = [threading.Thread(target=_read_events, args=(port, seconds), daemon=True) for _ in range(4)]
            for stream in streams:
                stream.start()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/gallery", timeout=10).read()
                time.sleep(1.0)
            state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=10).read())
            records = state["journal"]["read"]
            peak, now = rss_kib(page.pid, "VmHWM"), rss_kib(page.pid, "VmRSS")
            station_rss = rss_kib(runner.pid, "VmRSS")
            for process in (page, runner):
                process.terminate()
                process.wait(20)
    return {"page_peak_mib": peak / 1024, "page_rss_mib": now / 1024, "floor_mib": int(floor.stdout.strip()) / 1024,
            "station_rss_mib": station_rss / 1024, "records_followed": records}


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the page did not start")


def _read_events(port: int, seconds: float) -> None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/events", timeout=seconds + 10) as stream:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and stream.readline():
                pass
    except OSError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=240, help="verdicts per round")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the page follows the station")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    print(f"live tap: {args.rounds} rounds of {args.frames} verdicts per setting, 1536x864 frames, the demo model")
    measured = tap_cost(args.rounds, args.frames)
    fps_off = statistics.median(fps for fps, _, _ in measured[0.0])
    cpu_off = statistics.median(cpu for _, cpu, _ in measured[0.0])
    lines = ["| live tap | frames/s (median) | ratio to off | CPU ms a frame (median, all threads) | ratio to off (inverse) | "
             "the tap writer's share of the CPU (median) |", "|---|---|---|---|---|---|"]
    for rate in RATES:
        fps, cpu, share = (statistics.median(values[i] for values in measured[rate]) for i in range(3))
        lines.append(f"| {'off' if rate == 0 else f'{rate:g}/s'} | {fps:.1f} | {fps / fps_off:.3f} | {cpu * 1000:.2f} | {cpu_off / cpu:.3f} | "
                     f"{share:.2%} |")
    print("\n".join(lines))
    per_write = sum(busy for busy, _ in WRITES) / max(sum(count for _, count in WRITES), 1)
    station_cpu_per_s = fps_off * cpu_off  # the CPU a second the station had here, tap off
    print(f"the tap's writer: {per_write * 1000:.2f} CPU ms a frame written ({sum(c for _, c in WRITES)} frames); at 2/s that is "
          f"{2 * per_write * 1000:.1f} CPU ms a second: {2 * per_write / station_cpu_per_s:.2%} of the {station_cpu_per_s * 1000:.0f} CPU ms "
          f"a second the station had in this run, {2 * per_write / 2.0:.2%} of a station that has both cores")
    print(f"the page, following the station for {args.seconds:g} s with 4 event streams:")
    memory = page_memory(args.seconds)
    print(f"| page peak RSS | page RSS | bare Python + tornado | station RSS | records followed | peak / 60 MB budget | peak / floor |\n"
          f"|---|---|---|---|---|---|---|\n| {memory['page_peak_mib']:.1f} MiB | {memory['page_rss_mib']:.1f} MiB | "
          f"{memory['floor_mib']:.1f} MiB | {memory['station_rss_mib']:.1f} MiB | {memory['records_followed']} | "
          f"{memory['page_peak_mib'] * 1.048576 / BUDGET_MB:.2f} | {memory['page_peak_mib'] / memory['floor_mib']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"tap": {str(rate): [{"fps": fps, "cpu_s_per_frame": cpu, "tap_share": share}
                                                                   for fps, cpu, share in values]
                                                       for rate, values in measured.items()}, "page": memory}, indent=1))


if __name__ == "__main__":
    main()
