"""The drift watch's statistics (daemon/station/drift.py), pure; its [drift] table; what `inspectd check` says of it.

The station's use of it (real model, real images, real journald) is in tests/integration/test_drift_station.py.
"""

from __future__ import annotations

import doctest
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import DEMO_MODEL, cli
from inspectd.daemon.errors import EX_CONFIG
from inspectd.daemon.schema import NormalScores
from inspectd.daemon.station import drift as drift_module
from inspectd.daemon.station.drift import CLEAR_FRACTION, LIMIT_SIGMA, WINDOW, DriftChange, DriftConfig, DriftWatch, drift_watch


def feed(watch: DriftWatch, scores) -> list[tuple[int, DriftChange]]:
    """Each score in turn; the changes, with the index of the score that brought each."""
    return [(index, change) for index, score in enumerate(scores) if (change := watch.add(score)) is not None]


def test_docstring_example_runs():
    result = doctest.testmod(drift_module)
    assert result.attempted and result.failed == 0


def test_nothing_until_the_window_is_full():
    watch = DriftWatch(0.0, 1.0, window=10, limit_sigma=1.5)
    assert feed(watch, [100.0] * 9) == [] and watch.shift is None and not watch.alarmed
    [(index, change)] = feed(watch, [100.0])
    assert (index, change) == (0, DriftChange(True, 100.0, 100.0)) and watch.alarmed


def test_the_limit_itself_is_not_beyond_it():
    """|shift| > limit alarms; exactly the limit does not (in both directions), the next float up does."""
    for sign in (1.0, -1.0):
        watch = DriftWatch(10.0, 2.0, window=10, limit_sigma=1.5)
        at_limit = 10.0 + sign * 1.5 * 2.0  # 13.0 or 7.0: the mean of ten of them is exactly that, the shift exactly 1.5
        assert feed(watch, [at_limit] * 25) == [] and watch.shift == sign * 1.5
        beyond = math.nextafter(at_limit, sign * math.inf)
        changes = feed(watch, [beyond] * 10)
        assert [c.alarmed for _, c in changes] == [True] and abs(changes[0][1].shift) > 1.5
        assert changes[0][0] <= 9  # by the time the window holds only those, its mean is exactly the next float beyond


def test_hysteresis_one_start_one_end():
    """Above the limit for long: one start. Back under the limit but above half of it: still alarmed. At half or less: one end."""
    watch = DriftWatch(0.0, 1.0, window=10, limit_sigma=2.0)
    assert feed(watch, [0.0] * 10) == []
    started = feed(watch, [3.0] * 50)
    assert [c.alarmed for _, c in started] == [True] and started[0][0] == 6  # 7 of 10 at 3.0: mean 2.1 > 2
    assert feed(watch, [1.5] * 50) == [] and watch.alarmed and watch.shift == 1.5  # under the limit, above the clear level
    ended = feed(watch, [1.0] * 10)  # exactly half the limit is within it: the end, once the window is all 1.0
    assert [(index, c.alarmed) for index, c in ended] == [(9, False)] and not watch.alarmed and watch.shift == 1.0
    assert feed(watch, [1.9] * 50) == []  # back above half, under the limit: no new alarm
    assert [c.alarmed for _, c in feed(watch, [-2.5] * 10)] == [True]  # a shift down is a drift too


def test_non_finite_scores_are_not_counted():
    watch = DriftWatch(0.0, 1.0, window=10, limit_sigma=2.0)
    assert feed(watch, [math.nan, math.inf, -math.inf] * 5) == [] and len(watch.scores) == 0


def test_a_folder_that_cannot_measure_a_shift_has_no_watch():
    with pytest.raises(ValueError):
        DriftWatch(1.0, 0.0)
    normal = NormalScores(count=10, mean=65.6, std=12.4, min=50.0, p50=66.0, p95=83.0, p99=90.0, max=92.0)
    watch, note = drift_watch(DriftConfig(), normal)
    assert watch is not None and (watch.window, watch.limit_sigma) == (WINDOW, LIMIT_SIGMA) and note.startswith("drift: watching")
    assert drift_watch(DriftConfig(enabled=False), normal) == (None, "drift: off ([drift] enabled = false)")
    watch, note = drift_watch(DriftConfig(), None)
    assert watch is None and note.startswith("drift: off: the model folder has no normal_scores")
    flat = NormalScores(count=1, mean=65.6, std=0.0, min=65.6, p50=65.6, p95=65.6, p99=65.6, max=65.6)
    watch, note = drift_watch(DriftConfig(), flat)
    assert watch is None and "no spread" in note


# A reference: the same rules written the plain way, the window recomputed from the whole list at every score.
def reference(scores: list[float], mean: float, std: float, window: int, limit: float) -> list[tuple[int, bool]]:
    alarmed, changes, kept = False, [], []
    for index, score in enumerate(scores):
        kept.append(score)
        if len(kept) < window:
            continue
        shift = (math.fsum(kept[-window:]) / window - mean) / std
        if not alarmed and abs(shift) > limit:
            alarmed = True
            changes.append((index, True))
        elif alarmed and abs(shift) <= limit * CLEAR_FRACTION:
            alarmed = False
            changes.append((index, False))
    return changes


@given(scores=st.lists(st.floats(-50, 50, allow_nan=False), max_size=300), window=st.integers(1, 40),
       limit=st.floats(0.1, 5.0), mean=st.floats(-5, 5), std=st.floats(0.5, 20))
def test_changes_alternate_and_match_the_plain_rules(scores, window, limit, mean, std):
    """Whatever the scores: at most one record per start and one per end, alternating, starting with a start; each start
    beyond the limit, each end within half of it; and exactly where the plain rules put them."""
    watch = DriftWatch(mean, std, window=window, limit_sigma=limit)
    changes = feed(watch, scores)
    assert [(index, c.alarmed) for index, c in changes] == reference(scores, mean, std, window, limit)
    assert [c.alarmed for _, c in changes] == [index % 2 == 0 for index in range(len(changes))]
    for _, change in changes:
        assert abs(change.shift) > limit if change.alarmed else abs(change.shift) <= limit * CLEAR_FRACTION
    assert watch.alarmed == (bool(changes) and changes[-1][1].alarmed)


@given(level=st.floats(-3, 3), frames=st.integers(200, 600))
def test_a_steady_station_within_the_limit_never_alarms(level, frames):
    """Scores that sit still anywhere within the limit (the line's own offset from the calibration images) raise nothing,
    however long the station runs."""
    watch = DriftWatch(65.0, 12.0, limit_sigma=LIMIT_SIGMA)
    steady = 65.0 + level * 12.0 * (LIMIT_SIGMA / 3)  # a shift anywhere from -limit to +limit, both included
    assert feed(watch, [steady] * frames) == []


# ---------------------------------------------------------------- [drift] and `inspectd check`


def config_file(tmp_path: Path, model: Path, drift: str) -> Path:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    cv2.imwrite(str(images / "000.png"), np.full((360, 480, 3), 128, np.uint8))
    path = tmp_path / "inspectd.toml"
    path.write_text(f'[model]\npath = "{model}"\n[source]\nkind = "directory"\npath = "{images}"\n[archive]\nenabled = false\n{drift}')
    return path


@pytest.mark.parametrize("drift, key, problem", [
    ("[drift]\nwindow = 5\n", "drift.window", "must be at least 10, got 5"),
    ("[drift]\nlimit_sigma = 0\n", "drift.limit_sigma", "must be greater than 0, got 0.0"),
    ("[drift]\nenabled = 1\n", "drift.enabled", "must be true or false, got 1"),
    ("[drift]\nsigma = 3\n", "drift.sigma", "unknown key; valid keys in [drift]: enabled, window, limit_sigma"),
])
def test_drift_keys_are_checked_one_line_each(tmp_path, drift, key, problem):
    path = config_file(tmp_path, DEMO_MODEL, drift)
    for command in ("check", "run") if key == "drift.window" else ("check",):  # run and check share the parser
        result = cli(command, "--config", path)
        assert result.returncode == EX_CONFIG, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"inspectd: {path}: key {key}: {problem}"), result.stderr


def test_check_says_whether_drift_is_watched_and_why_not(tmp_path):
    path = config_file(tmp_path, DEMO_MODEL, "[drift]\nwindow = 50\nlimit_sigma = 2.5\n")
    result = cli("check", "--config", path)
    assert result.returncode == 0, result.stderr
    assert "  drift: watching the last 50 PASS scores, alarm beyond ±2.5σ of the normal scores (63.56 ± 9.55 over 10 images)" \
        in result.stdout.splitlines()
    folder = tmp_path / "no-normal"
    shutil.copytree(DEMO_MODEL, folder)
    metadata = json.loads((folder / "inspectd.json").read_text())
    metadata["normal_scores"] = None  # as `inspectd export` writes it without calibration good images
    (folder / "inspectd.json").write_text(json.dumps(metadata, indent=2))
    result = cli("check", "--config", config_file(tmp_path, folder, ""))
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("  drift: off: the model folder has no normal_scores") for line in result.stdout.splitlines())
    result = cli("check", "--config", config_file(tmp_path, DEMO_MODEL, "[drift]\nenabled = false\n"))
    assert "  drift: off ([drift] enabled = false)" in result.stdout.splitlines()
