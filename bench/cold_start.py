"""Where inspectd's cold start goes: process start to its first verdict, in phases, a fresh process per run.

    python bench/cold_start.py MODEL_DIR IMAGE [--precision auto] [--rounds 5]

Each round runs two processes that do what ``inspectd infer MODEL_DIR IMAGE`` does, timing each step: the first
with an empty self-test memory (a first load: every self-test runs), the second with what the first left (a
station restarting: the self-test remembered). Phases: Python's start-up (process start to the script's first
line), the command's parser (``inspectd.daemon.cli``, every command module), numpy + OpenCV + OpenVINO imports, the
model folder read and checked (sha256), the self-test cases and graph read, compile, self-test (``Model.timings``),
the first frame (read, infer, judge). Medians over the rounds; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PHASES = ("python_s", "parser_s", "imports_s", "folder_s", "read_s", "compile_s", "self_test_s", "first_frame_s")


def child(model_dir: str, image: str, precision: str, spawned: float) -> None:
    marks = {"python_s": time.time() - spawned}
    start = time.perf_counter()
    from inspectd.daemon.cli import build_parser

    build_parser()
    marks["parser_s"] = time.perf_counter() - start
    start = time.perf_counter()
    import cv2  # noqa: F401
    import numpy  # noqa: F401
    import openvino  # noqa: F401

    marks["imports_s"] = time.perf_counter() - start
    from inspectd.daemon.runtime.images import read_image
    from inspectd.daemon.runtime.model import Model
    from inspectd.daemon.runtime.selftest_memory import SelfTestMemory

    model = Model.load(model_dir, precision=precision, memory=SelfTestMemory.default())
    marks.update({name: model.timings[name] for name in ("folder_s", "read_s", "compile_s", "self_test_s")})
    start = time.perf_counter()
    result = model.infer(read_image(image), image)
    model.rule().judge()(result.score, result.anomaly_map)
    marks["first_frame_s"] = time.perf_counter() - start
    marks["total_s"] = time.time() - spawned
    marks["remembered"] = sum(1 for trial in model.trials if trial.remembered)
    marks["trials"] = len(model.trials)
    print(json.dumps(marks))


def run(model_dir: str, image: str, precision: str, cache: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"} | {"XDG_CACHE_HOME": cache}
    spawned = time.time()
    out = subprocess.run([sys.executable, __file__, "--child", model_dir, image, precision, repr(spawned)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("image")
    parser.add_argument("--precision", default="auto", choices=("auto", "f32", "bf16", "f16"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"first load": [], "remembered": []}
    for number in range(args.rounds):
        print(f"bench: cold start, round {number + 1}/{args.rounds}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="inspectd-cold-") as cache:
            runs["first load"].append(run(args.model_dir, args.image, args.precision, cache))
            runs["remembered"].append(run(args.model_dir, args.image, args.precision, cache))
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    print(f"cold start of {args.model_dir} at --precision {args.precision}, {args.rounds} rounds, medians in ms "
          f"(load average {os.getloadavg()[0]:.2f} at the end)")
    print("| load | " + " | ".join(p.removesuffix("_s") for p in PHASES) + " | total | self-tests remembered |")
    print("|---" * (len(PHASES) + 3) + "|")
    for name, mine in runs.items():
        cells = [f"{median([r[p] for r in mine]) * 1000:.0f}" for p in PHASES]
        print(f"| {name} | " + " | ".join(cells) + f" | {median([r['total_s'] for r in mine]) * 1000:.0f} | "
              f"{mine[0]['remembered']} of {mine[0]['trials']} |")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
        sys.exit(0)
    sys.exit(main())
