"""A PaDiM checkpoint the way a supervisor hands it over: plain anomalib, nothing of inspectd's.

resnet18, layers 1-3, 256x256, anomalib's own Engine and Folder datamodule. Benchmarks compare
inspectd against anomalib's inferencers on it, and tests export it. Random weights: no ResNet18
ImageNet checkpoint is obtainable offline, which is fine for parity and speed, not for accuracy.

    >>> checkpoint = train_plain_anomalib(Path("../shared/data/cookie"), Path("/tmp/run"), ["test/cracked"])  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from pathlib import Path


def train_plain_anomalib(data: Path, out: Path, abnormal: list[str], validate: bool = True) -> Path:
    """Fit on ``data/train/good``; with ``validate`` anomalib's F1 threshold on ``test/good`` + ``abnormal``.

    Without validation the checkpoint carries anomalib's NaN threshold, as a never-validated
    model does. Returns ``out/model.ckpt``.
    """
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
