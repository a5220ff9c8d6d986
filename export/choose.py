"""``inspectd train --choose``: the model chosen by what it catches at the false-reject rate the line accepts.

Each candidate (the offline backbones at 128 px, an input of the images' own aspect ratio and 256 px, cheapest
first, as many as the time budget allows) is fitted on the fitting images and its threshold set on their
cross-fitted scores, as ``train`` does; it is then measured on the **validation** images (every other defective
image of each kind: ``evaluation.roles.split``): the share caught at that threshold, its image AUROC against the
cross-fitted good scores, its latency here (the exported graph through the station's runtime) and a projection for a
Raspberry Pi 5 (README "What a Raspberry Pi 5 should reach"). The one that catches most wins (then AUROC, then
latency); the other defective images were not used to choose it, and ``train`` reports on them.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.evaluation import thresholds
from inspectd.daemon.evaluation.dataset import Sample
from inspectd.daemon.evaluation.metrics import Rate, auroc

from .sizes import ImageSize, aspect_size

BACKBONES = ("tf_efficientnet_lite0", "mobilenetv2_100")  # the backbones with offline ImageNet weights
DEFAULT_BUDGET_MINUTES = 30.0


@dataclass
class Measured:
    name: str
    catch: Rate | None  # of the validation defective images, at the candidate's threshold
    choice: thresholds.Choice
    auroc: float | None
    latency_ms: float
    pi_ms: float
    seconds: float  # fitting and measuring it
    fitted: object  # train.Fitted

    def row(self) -> list[str]:
        line = self.choice.line
        return [self.name, "n/a" if self.catch is None else str(self.catch),
                f"{line.expected:.2%} (at most {line.high:.2%})" if line else "-",
                "n/a" if self.auroc is None else f"{self.auroc:.3f}", f"{self.latency_ms:.1f}", f"{self.pi_ms:.0f}", f"{self.seconds:.0f}"]


def candidates(fit_images: list[Path], say: Callable[[str], None]) -> list[ImageSize | None]:
    """The input sizes to try, cheapest first: 128, the images' aspect ratio at 128 (when not square), 256."""
    sizes = [ImageSize(128, 128)]
    try:
        aspect = aspect_size(fit_images, 128)
        if not aspect.square:
            sizes.append(aspect)
    except InspectdError as exc:
        say(f"no input of the images' aspect ratio: {exc.problem}")
    return sizes + [ImageSize(256, 256)]


def choose(specs: list, fit_images: list[Path], validation: list[Sample], target: float, confidence: float, color: str, work: Path,
           budget_s: float, fit, say: Callable[[str], None]) -> Measured:
    """Fit and measure each spec in order while the budget lasts (the first always); returns the winner, its checkpoint
    in its own folder under ``work``, the others' folders removed."""
    start, measured, skipped = time.monotonic(), [], []
    per_pixel = 0.0  # seconds per input pixel, the most any candidate so far took
    for number, spec in enumerate(specs, 1):
        pixels = spec.size.height * spec.size.width
        left = budget_s - (time.monotonic() - start)
        if measured and per_pixel * pixels > left:
            skipped.append(f"{spec.name()} (about {per_pixel * pixels / 60:.0f} min, {max(left, 0) / 60:.0f} min of the budget left)")
            continue
        say(f"candidate {number} of {len(specs)}: {spec.name()}")
        began = time.monotonic()
        folder = Path(tempfile.mkdtemp(prefix="candidate-", dir=work))
        candidate = measure(fit(spec, fit_images, folder), validation, target, confidence, color)
        candidate.seconds = time.monotonic() - began
        measured.append(candidate)
        per_pixel = max(per_pixel, candidate.seconds / pixels)
    for line in table(measured):
        say(line)
    for name in skipped:
        say(f"not tried within the budget (--budget): {name}")
    if not validation:
        say("no defective images: what each candidate catches cannot be measured, so none is chosen for it; keeping the first "
            "(--backbone, --image-size); put defective images in test/<defect> to choose by what the model catches")
        winner = measured[0]
    else:
        winner = max(measured, key=lambda m: (m.catch.count, m.auroc or 0.0, -m.latency_ms))
        say(f"chosen: {winner.name}, catching {winner.catch} of the validation defective images at its threshold")
    for other in measured:
        if other is not winner:
            shutil.rmtree(other.fitted.work, ignore_errors=True)
    return winner


def measure(fitted, validation: list[Sample], target: float, confidence: float, color: str) -> Measured:
    from .checkpoint import load_checkpoint
    from .progress import Bar
    from .verify import Frame, _reference

    choice = thresholds.for_false_reject_rate(fitted.threshold_scores, target, confidence=confidence)
    checkpoint = load_checkpoint(fitted.work / "model.ckpt")
    transform = checkpoint.preprocess.transform()
    scores = []
    with Bar("inspectd train", "scoring the validation defective images", len(validation)) as bar:
        for sample in validation:
            scores.append(_reference(checkpoint, Frame(str(sample.path), path=sample.path), transform)[0])
            bar.advance()
    scores = np.array(scores)
    catch = Rate(int((scores > choice.value).sum()), len(scores)) if len(scores) else None
    good = fitted.threshold_scores
    area = auroc(np.concatenate([good, scores]), np.concatenate([np.zeros(good.size, bool), np.ones(scores.size, bool)])) if len(scores) else None
    latency, pi = speed(checkpoint, validation, color)
    return Measured(fitted.spec.name(), catch, choice, area, latency, pi, fitted.seconds, fitted)


def speed(checkpoint, samples: list[Sample], color: str) -> tuple[float, float]:
    """The exported graph's latency here (median ms: resize + graph at f32, the station's runtime) and its projection for a
    Raspberry Pi 5 at f32 (runtime.cost: from the graph's work and its constants, read once a frame)."""
    from inspectd.daemon import schema
    from inspectd.daemon.runtime.cost import graph_cost
    from inspectd.daemon.runtime.images import read_image
    from inspectd.daemon.runtime.model import Model

    from .exporter import _draft
    from .graph import export_ir
    from .progress import Bar, quiet

    with tempfile.TemporaryDirectory() as folder, Bar("inspectd train", "timing the exported graph"), quiet():
        export_ir(checkpoint, Path(folder), None)  # unscaled: the same graph for timing
        model = Model(schema.ModelFolder(Path(folder), _draft(checkpoint, color)), precision="f32")
        frames = [read_image(s.path) for s in samples[:3]] or [np.full((480, 640) if color == schema.GRAY else (480, 640, 3), 128, np.uint8)]
        times = [model.infer(frame).latency_ms for _ in range(5) for frame in frames]
        pi_ms = graph_cost(Path(folder)).pi5_ms("f32")
    return statistics.median(times), pi_ms


def table(measured: list[Measured]) -> list[str]:
    header = ["candidate", "caught (validation, 95% CI)", "false rejects on the line", "AUROC", "ms here", "ms Pi 5 (projected)", "fit s"]
    rows = [header] + [m.row() for m in measured]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
