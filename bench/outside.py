"""inspectd and anomalib's OpenVINOInferencer measured from outside, as a user runs them: a process over image files.

    python bench/compare.py --outside [--precision f32] [--frames 60] [--rounds 3]

Contenders, each a fresh process per run, alternating (A/B, the order rotated every round):

- ``inspectd infer MODEL IMAGE... --json --precision P``: one JSON line per image;
- ``OpenVINOInferencer``: anomalib's inferencer on anomalib's own OpenVINO export of the same
  checkpoint, compiled with the same INFERENCE_PRECISION_HINT, ``predict(path)`` per image (its own
  image reading), one line per image (this file run with ``--anomalib-child``).

Per frame: (T(N) - T(1)) / (N - 1), T(k) the wall time of a process over k images (start-up,
model load and self-test cancel out); the median and p95 of the gaps between successive result
lines of the N-image run; cold start: process start to its first result line (a single-image
run, so nothing else is in it); peak RSS: the process's own, from wait4 in a small launcher
(``LAUNCHER``) that forks it: a process forked from this one, which has loaded torch and anomalib to export, would
start with this one's peak (Linux keeps the high-water mark across fork and exec) and both would read the same.
More frames than the data set holds cycle through its images (a file read again is decoded again).

inspectd remembers a self-test's outcome (``runtime/selftest_memory``): each round gives it an empty
memory (``XDG_CACHE_HOME``), so its first single-image run is a first load (every self-test runs:
"cold start, first load"), and the runs after it load as a station restarting does (the self-test
remembered: "cold start"). ``--precision auto``: inspectd's default, and OpenVINOInferencer with no
precision hint (OpenVINO's default).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONTENDERS = ("inspectd infer", "OpenVINOInferencer")
# argv: RESULT_FILE COMMAND...; runs COMMAND as its child, writes "peak_rss_kib exit_code" to RESULT_FILE, exits with its code
LAUNCHER = ("import os, sys\npid = os.fork()\nif pid == 0:\n    os.execvp(sys.argv[2], sys.argv[2:])\n"
            "_, status, usage = os.wait4(pid, 0)\ncode = os.waitstatus_to_exitcode(status)\n"
            "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {code}')\nsys.exit(code)")


def command(contender: str, paths: dict, images: list[Path], precision: str) -> list[str]:
    if contender == "inspectd infer":
        inspectd = Path(sys.executable).with_name("inspectd")
        return [str(inspectd), "infer", paths["inspectd_model"], *map(str, images), "--json", "--precision", precision]
    return [sys.executable, __file__, "--anomalib-child", paths["anomalib_openvino"], precision, *map(str, images)]


def run_once(argv: list[str], expected: int, cache: str | None = None) -> dict:
    """Run argv (with ``cache`` as its XDG_CACHE_HOME); the time of each result line from the start, the total, and the peak RSS."""
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"} | ({"XDG_CACHE_HOME": cache} if cache else {})
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as result:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, result.name, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
        stamps = []
        for line in proc.stdout:
            if line.startswith("{"):
                stamps.append(time.perf_counter() - start)
        proc.wait()
        total = time.perf_counter() - start
        peak_kib, code = (int(field) for field in (result.read().split() or ["0", str(proc.returncode)]))
    if proc.returncode != 0 or code != 0 or len(stamps) != expected:
        raise SystemExit(f"bench: {argv[0]} {argv[1]} exited {code} with {len(stamps)} of {expected} result lines")
    return {"total_s": total, "stamps_s": stamps, "peak_rss_mib": peak_kib / 1024.0}


def measure(paths: dict, images: list[Path], rounds: int, precision: str) -> dict:
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    for number in range(rounds):
        order = CONTENDERS[number % 2:] + CONTENDERS[: number % 2]
        for contender in order:
            print(f"bench: outside, round {number + 1}/{rounds}: {contender}", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="inspectd-bench-cache-") as empty:
                cache = empty if contender == "inspectd infer" else None  # anomalib's process keeps the user's cache (matplotlib's fonts)
                first = run_once(command(contender, paths, images[:1], precision), 1, cache) if cache else None
                single = run_once(command(contender, paths, images[:1], precision), 1, cache)
                many = run_once(command(contender, paths, images, precision), len(images), cache)
            runs[contender].append({"first": first, "single": single, "many": many})
    table = {}
    for contender, mine in runs.items():
        per_frame = [(r["many"]["total_s"] - r["single"]["total_s"]) / (len(images) - 1) * 1000 for r in mine]
        gaps = np.concatenate([np.diff(r["many"]["stamps_s"]) * 1000 for r in mine])
        table[contender] = {
            "per_frame_ms": float(np.median(per_frame)),
            "per_frame_ms_rounds": per_frame,
            "gap_median_ms": float(np.median(gaps)),
            "gap_p95_ms": float(np.percentile(gaps, 95)),
            "cold_start_s": float(np.median([r["single"]["stamps_s"][0] for r in mine])),
            "cold_start_first_load_s": float(np.median([r["first"]["stamps_s"][0] for r in mine])) if mine[0]["first"] else None,
            "peak_rss_mib": float(max(r["many"]["peak_rss_mib"] for r in mine)),
        }
    return table


def ratios(table: dict) -> list[tuple[str, float, float]]:
    mine, theirs = table["inspectd infer"], table["OpenVINOInferencer"]
    return [("per frame from outside, inspectd / OpenVINOInferencer", mine["per_frame_ms"] / theirs["per_frame_ms"], 0.6),
            ("gap between results (median), inspectd / OpenVINOInferencer", mine["gap_median_ms"] / theirs["gap_median_ms"], 0.6),
            ("cold start (process start to first verdict), inspectd / OpenVINOInferencer", mine["cold_start_s"] / theirs["cold_start_s"], 0.1),
            ("cold start, inspectd's first load (no self-test remembered) / OpenVINOInferencer",
             mine["cold_start_first_load_s"] / theirs["cold_start_s"], None),
            ("peak RSS, inspectd / OpenVINOInferencer", mine["peak_rss_mib"] / theirs["peak_rss_mib"], 0.3)]


def render(table: dict, checks: list, images: int, precision: str) -> str:
    lines = [f"From outside: {images} image files per run, precision {precision} asked of both",
             "| contender | per frame ms (T(N)-T(1))/(N-1) | gap median ms | gap p95 ms | cold start s | cold start, first load s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        first = "-" if row["cold_start_first_load_s"] is None else f"{row['cold_start_first_load_s']:.2f}"
        lines.append(f"| {name} | {row['per_frame_ms']:.2f} | {row['gap_median_ms']:.2f} | {row['gap_p95_ms']:.2f} | "
                     f"{row['cold_start_s']:.2f} | {first} | {row['peak_rss_mib']:.0f} |")
    lines += ["", "| ratio | measured | target |", "|---|---|---|"]
    for what, value, target in checks:
        met = "" if target is None else (" (met)" if value <= target else " (NOT met)")
        lines.append(f"| {what} | {value:.3f}{met} | {'-' if target is None else f'<= {target}'} |")
    return "\n".join(lines)


def anomalib_child(xml: str, precision: str, images: list[str]) -> int:
    """One process as a user of anomalib's OpenVINOInferencer runs it: load, then predict each file, one line each."""
    from anomalib.deploy import OpenVINOInferencer

    config = {} if precision == "auto" else {"INFERENCE_PRECISION_HINT": precision}  # auto: OpenVINO's default
    inferencer = OpenVINOInferencer(path=xml, device="CPU", config=config)
    for image in images:
        result = inferencer.predict(image)
        print(json.dumps({"image": image, "score": float(np.asarray(result.pred_score).reshape(-1)[0])}), flush=True)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--anomalib-child"]:
    sys.exit(anomalib_child(sys.argv[2], sys.argv[3], sys.argv[4:]))
