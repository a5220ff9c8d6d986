"""inspectd report over a real journald (a private one): a replay whose lighting changes midway shows as drift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL
from harness.journald import private_journald, unavailable_reason
from inspectd.daemon.demo.scene import generate_station_dataset

_reason = unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"private journald unavailable: {_reason}")


def brighter_midway(folder: Path, tmp_path: Path, count: int = 12, delta: int = 10) -> None:
    data = generate_station_dataset(tmp_path / "mugs", n_train=0, n_test_good=count, n_test_per_size=0)
    folder.mkdir()
    for index, path in enumerate(sorted((data / "test" / "good").glob("*.png"))):
        frame = cv2.imread(str(path))
        cv2.imwrite(str(folder / f"a_{index:03d}.png"), frame)
        cv2.imwrite(str(folder / f"b_{index:03d}.png"), np.clip(frame.astype(int) + delta, 0, 255).astype(np.uint8))  # a lamp brighter


def test_report_of_a_replay_with_a_lighting_change(tmp_path):
    images = tmp_path / "images"
    brighter_midway(images, tmp_path)
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{images}"\n'
                      f'[trigger]\nkind = "interval"\ninterval_ms = 200.0\n[archive]\nenabled = false\n')
    with private_journald(tmp_path / "journal") as jd:
        proc = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        jd.sync()
        store = jd.store
    plot = tmp_path / "shift.png"
    report = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "report", "--directory", str(store), "--model", str(DEMO_MODEL),
                             "--every", "1s", "--json", "--plot", str(plot)], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["frames"] == 24 and sum(row["frames"] for row in summary["hours"]) == 24
    assert summary["faults"] == {} and summary["latency_ms"]["p50"] > 0
    shifts = [row["shift_sigmas"] for row in summary["hours"] if row["shift_sigmas"] is not None]
    assert shifts[0] < 1.0 < shifts[-1]  # the first seconds look like the calibration images, the last do not
    assert any(row["drift"] for row in summary["hours"]) and not summary["hours"][0]["drift"]
    assert cv2.imread(str(plot)).shape == (460, 900, 3)
    text = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "report", "--directory", str(store), "--model", str(DEMO_MODEL),
                           "--every", "1s"], capture_output=True, text=True)
    assert "DRIFT" in text.stdout and "24 frames" in text.stdout
