"""inspectd report over a real journald (a private one): a replay whose lighting changes midway shows as drift."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL
from inspectd.testing.journald import private_journald, unavailable_reason
from inspectd.daemon.demo.scene import generate_station_dataset

_reason = unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"private journald unavailable: {_reason}")


def lamp_before_and_after(tmp_path: Path, count: int = 12, delta: int = 15) -> tuple[Path, Path]:
    """The same good mugs twice: as the calibration images saw them, then with a lamp ``delta`` grey levels brighter."""
    data = generate_station_dataset(tmp_path / "mugs", n_train=0, n_test_good=count, n_test_per_size=0)
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    for index, path in enumerate(sorted((data / "test" / "good").glob("*.png"))):
        frame = cv2.imread(str(path))
        cv2.imwrite(str(before / f"{index:03d}.png"), frame)
        cv2.imwrite(str(after / f"{index:03d}.png"), np.clip(frame.astype(int) + delta, 0, 255).astype(np.uint8))
    return before, after


def station_config(tmp_path: Path, images: Path) -> Path:
    config = tmp_path / f"{images.name}.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{images}"\n[archive]\nenabled = false\n')
    return config


def test_report_of_a_replay_with_a_lighting_change(tmp_path):
    """Two replays into one journal, the lamp changed between them. The periods of each are told apart by the clock
    (the second starts after a period boundary), so the figures do not depend on how fast a busy machine replays."""
    before, after = lamp_before_and_after(tmp_path)
    with private_journald(tmp_path / "journal") as jd:
        for images in (before, after):
            proc = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(station_config(tmp_path, images))],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            if images == before:
                boundary = datetime.fromtimestamp(math.floor(time.time()) + 1)  # every period of the first replay starts before it
                time.sleep(max(0.0, boundary.timestamp() - time.time()) + 0.05)
        jd.sync()
        store = jd.store
    plot = tmp_path / "shift.png"
    report = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "report", "--directory", str(store), "--model", str(DEMO_MODEL),
                             "--every", "1s", "--json", "--plot", str(plot)], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["frames"] == 24 and sum(row["frames"] for row in summary["hours"]) == 24
    assert summary["faults"] == {} and summary["latency_ms"]["p50"] > 0
    first = [row for row in summary["hours"] if datetime.fromisoformat(row["hour"]) < boundary]
    second = [row for row in summary["hours"] if datetime.fromisoformat(row["hour"]) >= boundary]
    assert sum(row["frames"] for row in first) == 12 == sum(row["frames"] for row in second)

    def mean_shift(rows: list[dict]) -> float:  # over the PASS frames, not the periods: a period may hold one frame
        weighted = [(row["shift_sigmas"], row["frames"] - row["rejects"]) for row in rows if row["shift_sigmas"] is not None]
        return sum(shift * passed for shift, passed in weighted) / sum(passed for _, passed in weighted)

    shifts = mean_shift(first), mean_shift(second)
    assert shifts[0] < 1.0 < shifts[1], shifts  # as the calibration images, then not
    assert any(row["drift"] for row in second)
    assert cv2.imread(str(plot)).shape == (460, 900, 3)
    # --since/--until as the README writes them, relative and absolute (the journal's times carry a zone; these may not)
    since = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "report", "--directory", str(store), "--since", "-1h", "--json"],
                           capture_output=True, text=True)
    assert since.returncode == 0 and json.loads(since.stdout)["frames"] == 24, since.stderr
    until = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "report", "--directory", str(store), "--until",
                            boundary.isoformat(sep=" ", timespec="seconds"), "--json"], capture_output=True, text=True)
    assert until.returncode == 0 and json.loads(until.stdout)["frames"] == 12, until.stderr
    text = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "report", "--directory", str(store), "--model", str(DEMO_MODEL),
                           "--every", "1s"], capture_output=True, text=True)
    assert "DRIFT" in text.stdout and "24 frames" in text.stdout
