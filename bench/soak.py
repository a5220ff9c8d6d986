"""Soak: the station daemon for N frames into the journal, watched from outside.

    python bench/soak.py --frames 100000 --json soak.json

Runs ``inspectd run`` over a looping folder of demo station images (stained and good mugs,
so rejects are archived all along and the archive's quota is exercised), with a journal
record per frame. While it runs, the daemon's resident memory, open file descriptors and
threads are sampled from /proc; its STATUS (sd_notify, read from a socket of our own) says
how many frames are done. At the end the journal is read back (``journalctl -o json
_PID=...``) and the report says: frames asked for, verdict records (equal?), frame numbers
contiguous 1..N?, fault records, RSS after warm-up and at the end, descriptors and threads
after warm-up and at the end, the archive's size against its quota.

It writes to whatever journald serves /run/systemd/journal: the system's on a station, a
private one when the tests run it (tests/integration/test_soak.py). Exit status 0 when every check
holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

WARM_UP_FRACTION = 0.1  # RSS, descriptors and threads "after warm-up": once this share of the frames is done


def proc_figures(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return {"rss_mib": rss / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": len(os.listdir(f"/proc/{pid}/task"))}


def window_figures(samples: list[dict]) -> dict | None:
    """A window's figures: descriptors and threads at their fewest (a file open for one frame is not a leak), RSS at its last."""
    if not samples:
        return None
    return {"rss_mib": samples[-1]["rss_mib"], "fds": min(s["fds"] for s in samples),
            "threads": min(s["threads"] for s in samples), "frames": samples[0]["frames"]}


def write_config(work: Path, model: Path, images: Path, quota_mb: float) -> Path:
    config = work / "inspectd.toml"
    config.write_text(
        f'[model]\npath = {json.dumps(str(model))}\n\n'
        f'[source]\nkind = "directory"\npath = {json.dumps(str(images))}\nmode = "loop"\n\n'
        f'[journal]\nenabled = true\nlog = "all"\nsummary_interval_s = 60.0\n\n'
        f'[archive]\nenabled = true\npath = {json.dumps(str(work / "archive"))}\nmax_mb = {quota_mb}\n\n'
        f'[gpio]\nchip = "memory"\n[gpio.reject]\nline = "GPIO17"\npulse_ms = 5.0\n[gpio.ready]\nline = "GPIO27"\nperiod_ms = 500.0\n'
    )
    return config


def journal_records(pid: int) -> list[dict]:
    subprocess.run(["journalctl", "--sync"], capture_output=True)
    out = subprocess.run(["journalctl", "--no-pager", "-o", "json", f"_PID={pid}"], capture_output=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def soak(frames: int, work: Path, model: Path | None, quota_mb: float, progress) -> dict:
    from inspectd.daemon.demo import demo_model
    from inspectd.daemon.demo.scene import generate_station_dataset

    model = model or demo_model()
    data = generate_station_dataset(work / "data", n_train=0, n_test_good=6, n_test_per_size=2)
    images = work / "images"
    images.mkdir(exist_ok=True)
    for path in sorted((data / "test").glob("*/*.png")):
        link = images / f"{path.parent.name}_{path.name}"
        if not link.exists():
            link.symlink_to(path)
    config = write_config(work, model, images, quota_mb)

    notify_path = work / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(1.0)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    started = time.monotonic()
    daemon = subprocess.Popen([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config), "--frames", str(frames)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done, samples = 0, []
    while daemon.poll() is None:
        try:
            message = notify.recv(4096).decode()
        except TimeoutError:
            message = ""
        for assignment in message.splitlines():
            if assignment.startswith("STATUS=") and " frames, " in assignment:
                done = int(assignment.split(" frames, ")[0].rsplit(" ", 1)[-1])
        try:
            samples.append(dict(proc_figures(daemon.pid), frames=done))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            break
        progress(done, frames)
    after_warm_up = [s for s in samples if s["frames"] >= frames * WARM_UP_FRACTION]
    warm = window_figures([s for s in after_warm_up if s["frames"] < frames * 2 * WARM_UP_FRACTION] or after_warm_up[:1])
    last = window_figures([s for s in samples if s["frames"] >= frames * (1 - WARM_UP_FRACTION)] or samples[-3:])
    stderr = daemon.communicate()[1]
    elapsed = time.monotonic() - started
    records = journal_records(daemon.pid)
    verdicts = [r for r in records if "INSPECTD_VERDICT" in r]
    numbers = [int(r["INSPECTD_FRAME"]) for r in verdicts]
    archive = sum(p.stat().st_size for p in (work / "archive").rglob("*") if p.is_file())
    report = {
        "frames": frames,
        "exit_status": daemon.returncode,
        "seconds": round(elapsed, 1),
        "frames_per_s": round(frames / elapsed, 1),
        "verdict_records": len(verdicts),
        "records_equal_frames": len(verdicts) == frames,
        "frames_contiguous": numbers == list(range(1, frames + 1)),
        "rejects": sum(r["INSPECTD_VERDICT"] == "REJECT" for r in verdicts),
        "fault_records": sum(r.get("PRIORITY") == "3" for r in records),
        "faults_by_kind": dict(Counter(f'{r.get("INSPECTD_FAULT")}/{r.get("INSPECTD_ERROR")}' for r in records if r.get("PRIORITY") == "3")),
        # The archive falling behind on a loaded machine is said and rightly so (the verdicts go on): not a failure here.
        "unexpected_faults": sum(r.get("PRIORITY") == "3" and (r.get("INSPECTD_FAULT"), r.get("INSPECTD_ERROR")) != ("archive", "behind")
                                 for r in records),
        "after_warm_up": warm,
        "at_end": last,
        "archive_bytes": archive,
        "archive_quota_bytes": int(quota_mb * 1024 * 1024),
        "archive_within_quota": archive <= quota_mb * 1024 * 1024,
        "stderr_tail": stderr[-2000:],
    }
    # A leak is growth. Fewer at the end is normal: the capture thread ends once it has read the last
    # frame, and the archive's temporary file is open on some samples and not on others.
    checks = {
        "daemon exit status 0": daemon.returncode == 0,
        "a verdict record per frame": report["records_equal_frames"],
        "frame numbers contiguous": report["frames_contiguous"],
        "no unexpected fault": report["unexpected_faults"] == 0,
        "archive within its quota": report["archive_within_quota"],
        "sampled after warm-up and at the end": bool(warm and last),
        "no descriptor growth": bool(warm and last and last["fds"] <= warm["fds"]),
        "no thread growth": bool(warm and last and last["threads"] <= warm["threads"]),
    }
    report["failed_checks"] = [name for name, held in checks.items() if not held]
    report["passed"] = not report["failed_checks"]
    return report


def print_report(report: dict) -> None:
    warm, end = report["after_warm_up"] or {}, report["at_end"] or {}
    rows = [
        ("frames asked / verdict records", f"{report['frames']} / {report['verdict_records']} ({'equal' if report['records_equal_frames'] else 'DIFFERENT'})"),
        ("frame numbers 1..N contiguous", "yes" if report["frames_contiguous"] else "NO"),
        ("rejects / fault records", f"{report['rejects']} / {report['fault_records']}"
                                    + "".join(f", {kind}: {count}" for kind, count in report["faults_by_kind"].items())),
        ("time, rate", f"{report['seconds']} s, {report['frames_per_s']} frames/s"),
        ("RSS after warm-up -> end", f"{warm.get('rss_mib', 0):.1f} -> {end.get('rss_mib', 0):.1f} MiB (warm-up at frame {warm.get('frames', '?')})"),
        ("file descriptors", f"{warm.get('fds')} -> {end.get('fds')}"),
        ("threads", f"{warm.get('threads')} -> {end.get('threads')}"),
        ("archive / quota", f"{report['archive_bytes'] / 2**20:.1f} / {report['archive_quota_bytes'] / 2**20:.1f} MiB"),
        ("daemon exit status", str(report["exit_status"])),
    ]
    for label, value in rows:
        print(f"{label:32} {value}")
    print("PASSED" if report["passed"] else "FAILED: " + "; ".join(report["failed_checks"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--model", type=Path, help="model folder (default: the demo model)")
    parser.add_argument("--quota-mb", type=float, default=20.0, help="the archive's quota (default 20 MB: it fills and rotates)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    every = max(1, args.frames // 20)
    state = {"shown": -1}

    def progress(done: int, total: int) -> None:
        if done // every != state["shown"]:
            state["shown"] = done // every
            print(f"soak: {done}/{total} frames", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="inspectd-soak-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        report = soak(args.frames, work, args.model, args.quota_mb, progress)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
