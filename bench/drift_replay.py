"""A lighting change replayed through the station, and what the journal then says.

The demo station's good mugs, first as trained, then with the lamp +DELTA grey levels; the
daemon runs them into a private journald (inspectd.testing.journald, tests/harness/: needs root, as the
journald tests do) with a small [drift] window; then `inspectd report` reads that journal:
reject rate and PASS-score shift per period, the drift record, and a plot.

    sudo .venv/bin/python bench/drift_replay.py --work /tmp/drift --plot drift-report.png
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from inspectd.daemon.demo import demo_model
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.testing.journald import private_journald

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=120, help="frames before the change, and as many after")
    parser.add_argument("--delta", type=int, default=15, help="grey levels added after the change")
    parser.add_argument("--window", type=int, default=40, help="[drift] window")
    parser.add_argument("--plot", type=Path, required=True)
    args = parser.parse_args()

    data = generate_station_dataset(args.work / "mugs", n_train=0, n_test_good=args.frames, n_test_per_size=0)
    images = args.work / "images"
    images.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(sorted((data / "test" / "good").glob("*.png"))):
        frame = cv2.imread(str(path))
        cv2.imwrite(str(images / f"a_{index:04d}.png"), frame)
        cv2.imwrite(str(images / f"b_{index:04d}.png"), np.clip(frame.astype(int) + args.delta, 0, 255).astype(np.uint8))
    model = demo_model()
    config = args.work / "inspectd.toml"
    config.write_text(f'[model]\npath = "{model}"\n[source]\nkind = "directory"\npath = "{images}"\n'
                      f'[trigger]\nkind = "interval"\ninterval_ms = 100.0\n[archive]\nenabled = false\n[drift]\nwindow = {args.window}\n')
    with private_journald(args.work / "journal") as journal:
        daemon = journal.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)])
        if daemon.wait() != 0:
            print(f"drift_replay: the daemon exited {daemon.returncode}", file=sys.stderr)
            return 1
        journal.sync()
        store = journal.store
    period = f"{max(1, round(2 * args.frames * 0.1 / 6))}s"  # about six periods at one frame per 100 ms
    report = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "report", "--directory", str(store), "--model", str(model),
                             "--every", period, "--plot", str(args.plot)])
    return report.returncode


if __name__ == "__main__":
    sys.exit(main())
