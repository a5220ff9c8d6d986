"""`inspectd infer` run twice as a user runs it: the second process takes the self-test from memory (its precision notice
says so) and gives the same verdicts; memory it cannot keep costs only the replay."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import problem_lines
from inspectd.daemon.demo.scene import generate_station_dataset


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    station = generate_station_dataset(tmp_path_factory.mktemp("station"), n_train=0, n_test_good=3, n_test_per_size=2)
    return sorted((station / "test").glob("*/*.png"))


def infer(model: Path, images: list[Path], **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "XDG_CACHE_HOME")} | env
    result = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "infer", str(model), *map(str, images), "--json"],
                            capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    return result


def verdicts(result: subprocess.CompletedProcess) -> list[tuple]:
    return [(r["image"], r["verdict"], r["score"]) for r in map(json.loads, result.stdout.splitlines())]


def test_the_second_run_takes_the_self_test_from_memory_with_the_same_verdicts(demo_model, images, tmp_path):
    first = infer(demo_model, images, XDG_CACHE_HOME=str(tmp_path / "cache"))
    records = sorted((tmp_path / "cache" / "inspectd" / "selftest-memory").glob("*.json"))
    assert records and all(json.loads(path.read_text())["key"]["model_bin_sha256"] for path in records)
    assert "remembered" not in first.stderr
    second = infer(demo_model, images, XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert verdicts(second) == verdicts(first) and len(verdicts(first)) == len(images)
    assert problem_lines(second.stderr) == []  # the notice is the only line, as in the first run
    if first.stderr:  # this CPU ran a faster precision that failed: each self-test is now said to be remembered
        notice = second.stderr.strip()
        failed = re.findall(r"(\w+) failed its self-test on this device: ", first.stderr)
        assert failed, first.stderr
        assert all(f"{precision} failed its self-test on this device: " in notice for precision in failed), notice
        assert notice.count("(remembered from ") == len(failed) + 1 and " passed it (remembered from " in notice, notice
    else:  # the first precision passed: nothing to say, and the record was still used
        assert second.stderr == ""
    assert sorted((tmp_path / "cache" / "inspectd" / "selftest-memory").glob("*.json")) == records


def test_the_station_keeps_it_in_its_state_directory(demo_model, images, tmp_path):
    state = tmp_path / "var-lib-inspectd"
    state.mkdir()
    infer(demo_model, images[:1], STATE_DIRECTORY=str(state), XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert list((state / "selftest-memory").glob("*.json")) and not (tmp_path / "cache").exists()


def test_memory_that_cannot_be_kept_costs_only_the_replay(demo_model, images, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    fresh = infer(demo_model, images, XDG_CACHE_HOME=str(tmp_path / "cache"))
    for _ in range(2):
        result = infer(demo_model, images, XDG_CACHE_HOME=str(blocked))
        assert verdicts(result) == verdicts(fresh) and result.stderr == fresh.stderr  # the self-test ran again, said the same
