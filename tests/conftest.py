"""Shared fixtures: real data from ../shared/data, real anomalib checkpoints, real model folders."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed CLI in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def train_plain_anomalib(data: Path, out: Path, abnormal: list[str], validate: bool = True) -> Path:
    """A PaDiM checkpoint the way a supervisor hands it over: plain anomalib, resnet18, random weights, 256x256."""
    from anomalib.data import Folder
    from anomalib.engine import Engine
    from anomalib.models import Padim

    args = {"normal_test_dir": "test/good", "abnormal_dir": abnormal} if validate else {"test_split_mode": "none", "val_split_mode": "none"}
    datamodule = Folder(name=data.name, root=data, normal_dir="train/good", train_batch_size=8, eval_batch_size=8, num_workers=0, seed=0, **args)
    model = Padim(backbone="resnet18", layers=["layer1", "layer2", "layer3"], pre_trained=False)
    no_validation = {} if validate else {"limit_val_batches": 0}
    engine = Engine(accelerator="cpu", devices=1, default_root_dir=out / "engine", logger=False, enable_progress_bar=False, **no_validation)
    engine.fit(model=model, datamodule=datamodule)
    checkpoint = out / "model.ckpt"
    engine.trainer.save_checkpoint(checkpoint)
    shutil.rmtree(out / "engine", ignore_errors=True)
    return checkpoint


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
