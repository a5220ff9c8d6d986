"""Shared fixtures: real data from ../shared/data, real anomalib checkpoints, real model folders."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# Property-based tests: 60 examples each by default (the unit tier stays under a minute);
# the full suite (tests/run.sh) asks for more with INSPECTD_HYPOTHESIS_EXAMPLES.
settings.register_profile("inspectd", max_examples=int(os.environ.get("INSPECTD_HYPOTHESIS_EXAMPLES", "60")), deadline=None)
settings.load_profile("inspectd")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
DEMO_MODEL = ROOT / "models" / "demo-mug"
HAS_EXPORT = all(importlib.util.find_spec(name) for name in ("torch", "anomalib"))

needs_export = pytest.mark.skipif(not HAS_EXPORT, reason="torch/anomalib not installed (pip install -e '.[export]')")


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the real inspection images live beside the repository in ../shared/data")
    return path


# A CPU that really executes bf16 or f16 (AVX-512 BF16/FP16) may fail a folder's self-test at it: the CLI says so in
# one line and runs at a precision that passed. That notice is not one of the errors a test counts.
PRECISION_NOTICE = re.compile(r"failed its self-test on this device: .*; running at \w+$")


def problem_lines(stderr: str) -> list[str]:
    """stderr's non-blank lines, less the precision fallback notice (which depends on the CPU, not the input)."""
    return [line for line in stderr.splitlines() if line.strip() and not PRECISION_NOTICE.search(line)]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed CLI in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI's own ``main`` in this process, for the unit tier: the same output and exit status a user gets, without
    a fresh process's second of imports. ``run_cli`` (a real process) is for the integration tier."""
    from inspectd.daemon.cli import main

    argv = [str(arg) for arg in args]
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit:  # argparse's usage errors
                code = exit.code if isinstance(exit.code, int) else 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["inspectd", *argv], code, out.getvalue(), err.getvalue())


def synthetic_verdict(frame: int, height: int = 48, width: int = 64, rejected: bool = True):
    """A real FrameVerdict on a random frame with an empty map: its archive files are real PNGs, no model needed."""
    import numpy as np

    from inspectd.daemon.runtime.decision import Rule, Verdict
    from inspectd.daemon.runtime.model import Inspection
    from inspectd.daemon.station.verdict import FrameVerdict

    pixels = np.random.default_rng(frame).integers(0, 256, (height, width, 3), dtype=np.uint8)
    inspection = Inspection(score=20.0, latency_ms=1.0, model_map=np.zeros((8, 8), np.float32), frame_size=(height, width),
                            region=(0.0, 0.0, float(height), float(width)))
    return FrameVerdict(frame=frame, source=f"part-{frame}.png", verdict=Verdict.REJECT if rejected else Verdict.PASS, score=20.0,
                        rule=Rule(10.0), latency_ms=1.0, model_id="0" * 64, precision="f32", defect_area=None, inspection=inspection,
                        pixels=pixels)


@pytest.fixture(scope="session")
def amd64_package(tmp_path_factory) -> Path:
    """The amd64 package of this checkout (systemd/deb/build.sh): what a station installs; built once per run."""
    out = tmp_path_factory.mktemp("deb")
    build = subprocess.run(["bash", str(ROOT / "systemd" / "deb" / "build.sh"), "amd64", str(out)],
                           env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True)  # fmt: skip
    if build.returncode == 75:  # the wheels can be neither downloaded nor found in the cache
        pytest.skip(build.stderr.strip())
    assert build.returncode == 0, build.stderr
    return Path(build.stdout.split()[-1])


def checkpoint_cache() -> Path:
    """Where trained checkpoints are kept between runs: the CI cache when writable, else the user's."""
    for folder in (Path(os.environ.get("INSPECTD_CI_CACHE", "/var/cache/inspectd-ci")), Path.home() / ".cache" / "inspectd-ci"):
        try:
            (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
            if os.access(folder / "checkpoints", os.W_OK):
                return folder / "checkpoints"
        except OSError:
            continue
    raise RuntimeError("no writable cache folder for trained checkpoints")


def _training_key(data: Path, abnormal: list[str], validate: bool) -> str:
    """Everything the checkpoint depends on: the images (names and sizes), the arguments, the code and the versions."""
    from importlib.metadata import version

    import inspectd.export.baseline as baseline

    digest = hashlib.sha256()
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(data)}:{path.stat().st_size}\n".encode())
    digest.update(json.dumps([sorted(abnormal), validate, version("torch"), version("anomalib")]).encode())
    digest.update(Path(baseline.__file__).read_bytes())
    return digest.hexdigest()[:20]


def train_plain_anomalib(data: Path, out: Path, abnormal: list[str], validate: bool = True) -> Path:
    """inspectd.export.baseline's plain anomalib checkpoint, trained once per set of inputs and cached across runs.

    Returns ``out/model.ckpt``, a copy: tests may do what they like with it.
    """
    from inspectd.export.baseline import train_plain_anomalib as train

    cached = checkpoint_cache() / f"{data.name}-{_training_key(data, abnormal, validate)}.ckpt"
    # Test workers (pytest -n) that need one checkpoint at once: the first trains it, the others wait for it.
    with open(cached.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cached.is_file():
            with tempfile.TemporaryDirectory(dir=cached.parent) as work:
                checkpoint = train(data, Path(work), abnormal, validate)
                checkpoint.rename(cached)  # same folder: atomic, so a killed run never leaves half a checkpoint
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, out / "model.ckpt")
    return out / "model.ckpt"


@pytest.fixture(scope="session")
def cookie() -> Path:
    return shared_dataset("cookie")


@pytest.fixture(scope="session")
def circuitboard() -> Path:
    return shared_dataset("circuitboard")


@pytest.fixture(scope="session")
def cookie_checkpoint(cookie: Path, tmp_path_factory) -> Path:
    if not HAS_EXPORT:
        pytest.skip("torch/anomalib not installed")
    return train_plain_anomalib(cookie, tmp_path_factory.mktemp("cookie_ckpt"), ["test/cracked"])


@pytest.fixture(scope="session")
def circuitboard_checkpoint(circuitboard: Path, tmp_path_factory) -> Path:
    if not HAS_EXPORT:
        pytest.skip("torch/anomalib not installed")
    return train_plain_anomalib(circuitboard, tmp_path_factory.mktemp("circuit_ckpt"), ["test/anomaly"])


@pytest.fixture(scope="session")
def cookie_model(cookie_checkpoint: Path, cookie: Path, tmp_path_factory) -> Path:
    from inspectd.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("cookie_model") / "model"
    export_checkpoint(cookie_checkpoint, out, calibration_dir=cookie / "test")
    return out


@pytest.fixture(scope="session")
def demo_model() -> Path:
    if not (DEMO_MODEL / "inspectd.json").is_file():
        pytest.fail(f"{DEMO_MODEL} is missing: the shipped demo model must be in the repository")
    return DEMO_MODEL


# Tiers are folders: tests/unit (the quick one, `pytest -m unit -n 2`: no training, no daemon, no
# command-line process per case), tests/integration (the CLI as a user runs it, real daemons, real
# journald, training on real images with checkpoints cached above), tests/system (real systemd in
# nspawn, the emulated arm64 root, the packages). A file's folder is its tier: it cannot land in the wrong one.
TIERS = ("unit", "integration", "system")


#
# tests/run.sh runs them on two workers (pytest-xdist, --dist loadfile): a file goes whole to one worker, so its module
# and session fixtures are built once per file. (Not --dist loadgroup: with pytest 9 it ignores the xdist_group marks.)
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        tier = Path(item.path).relative_to(ROOT / "tests").parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.path}: a test file belongs in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, tier))
