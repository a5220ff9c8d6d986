"""``inspectd train``: fit PaDiM with anomalib's own Engine, set the threshold on images the model never saw, export a
verified model folder and report on images used for neither.

OUT/model.ckpt is the anomalib checkpoint (for the workstation); OUT/model/ is the model folder to copy to the Pi.
The images' roles are ``evaluation.roles``: ``train/good`` fits the model and, cross-fitted (``crossfit``), sets the
threshold; ``test/`` (or every 4th image of a plain folder) reports.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspectd.daemon import schema
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.evaluation import roles, thresholds
from inspectd.daemon.evaluation.metrics import Rate, auroc
from inspectd.daemon.evaluation.thresholds import DEFAULT_CONFIDENCE, DEFAULT_FALSE_REJECT_RATE
from inspectd.daemon.runtime.colour import files_color

from . import calibration, crossfit
from . import choose as chooser
from . import weights as backbone_weights
from .exporter import atomic_folder, export_verified
from .progress import Bar, lightning_bar, quiet
from .choose import DEFAULT_BUDGET_MINUTES
from .sizes import ImageSize, aspect_size

DEFAULTS = {
    # backbone: (layers, n_features); the first layer has the finest resolution (stride 4)
    "resnet18": (["layer1", "layer2", "layer3"], 100),
    "tf_efficientnet_lite0": (["blocks.1", "blocks.2", "blocks.4"], 100),
    "mobilenetv2_100": (["blocks.1", "blocks.2", "blocks.4"], 100),
}
DEFAULT_IMAGE_SIZE = 128  # Lite0 at 128: a quarter of the cost of 256 at the same AUROC (README, "Cheaper backbones")
PREFIX = "inspectd train"


def _say(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Spec:
    """One model to fit: what ``--backbone``, ``--image-size`` and ``--weights`` say."""

    backbone: str
    size: ImageSize
    weights: str = "offline"
    layers: tuple[str, ...] | None = None
    n_features: int | None = None

    def name(self) -> str:
        return f"{self.backbone} {self.size}"


@dataclass
class Fitted:
    spec: Spec
    work: Path  # holds model.ckpt
    threshold_scores: np.ndarray  # each fitting image's score by a model fitted without it
    seconds: float


def train(
    data_dir: str | Path,
    out: str | Path,
    backbone: str = "tf_efficientnet_lite0",
    weights: str = "offline",
    image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
    layers: list[str] | None = None,
    n_features: int | None = None,
    force: bool = False,
    false_reject_rate: float = DEFAULT_FALSE_REJECT_RATE,
    confidence: float = DEFAULT_CONFIDENCE,
    keep_aspect: bool = False,
    choose: bool = False,
    budget_minutes: float = DEFAULT_BUDGET_MINUTES,
) -> Path:
    data_dir, out = Path(data_dir), Path(out)
    if out.exists() and not force:
        raise InspectdError(f"{out}: already exists; choose another --out or pass --force to replace it")
    thresholds.check_target(false_reject_rate, confidence)
    spec = check(Spec(backbone, ImageSize.of(image_size), weights, tuple(layers) if layers else None, n_features))
    split = roles.split(data_dir, validation=choose)
    _say(split.counts())
    color = images_color(data_dir, split)
    if keep_aspect:
        spec = Spec(spec.backbone, aspect_size(split.fit, spec.size.short), spec.weights, spec.layers, spec.n_features)
        _say(f"input {spec.size}: the fitting images' aspect ratio, shorter side {spec.size.short}")
    with atomic_folder(out) as work:
        if choose:
            specs = [spec] + [candidate for size in chooser.candidates(split.fit, _say) for backbone in chooser.BACKBONES
                              if (candidate := check(Spec(backbone, size))) != spec]
            winner = chooser.choose(specs, split.fit, split.validation, false_reject_rate, confidence, color, work,
                                    budget_minutes * 60.0, fit, _say)
            (winner.fitted.work / "model.ckpt").rename(work / "model.ckpt")
            shutil.rmtree(winner.fitted.work, ignore_errors=True)
            fitted = Fitted(winner.fitted.spec, work, winner.fitted.threshold_scores, winner.fitted.seconds)
        else:
            fitted = fit(spec, split.fit, work)
        choice = thresholds.for_false_reject_rate(fitted.threshold_scores, false_reject_rate, confidence=confidence)
        for line in choice.lines(good="good images of the fitting set, each scored by a model fitted without it"):
            _say(line)
        exported = export_model(fitted, split, choice, color, work, out)
        for line in report_lines(exported.samples, exported.scores, exported.metadata.threshold.value):
            _say(line)
        if any(s.anomalous for s in split.report) and not choose:
            _say("to compare backbones and input sizes by what they catch at this false-reject rate: inspectd train "
                 f"{data_dir} --out DIR --choose (half the defective images choose, the other half report)")
    _say(f"wrote {out / 'model.ckpt'} and {out / 'model'} (copy {out / 'model'} to the station)")
    return out


def check(spec: Spec) -> Spec:
    """Everything about the model that can be checked before an image is read: the backbone's name, its layers and
    its weights. Returns the spec with the default layers filled in."""
    if spec.size.height < 32 or spec.size.width < 32 or spec.size.height % 32 or spec.size.width % 32:
        raise InspectdError(f"--image-size {spec.size}: each side must be a multiple of 32 (the backbones' largest stride), "
                            "e.g. 128, 192, 256 or 128x192")
    import timm

    try:
        config = timm.get_pretrained_cfg(spec.backbone)
    except RuntimeError:
        config = None
    if config is None:
        raise InspectdError(f"--backbone {spec.backbone}: not a timm model name; try tf_efficientnet_lite0, mobilenetv2_100 or resnet18")
    default_layers, default_features = DEFAULTS.get(spec.backbone, (None, None))
    layers, n_features = spec.layers or default_layers, spec.n_features or default_features
    if layers is None or n_features is None:
        raise InspectdError(f"--backbone {spec.backbone}: no default layers/features; pass --layers and --n-features "
                            f"(defaults exist for {', '.join(DEFAULTS)})")
    backbone_weights.check_available(spec.backbone, spec.weights)
    return Spec(spec.backbone, spec.size, spec.weights, tuple(layers), n_features)


def images_color(data_dir: Path, split: roles.Split) -> str:
    """The colour mode of every image the model fits, validates and reports on: "gray" when all are gray, "rgb" when
    all are colour; a mixed set is refused naming a file of each kind (runtime.colour.dataset_color says why)."""
    paths = split.fit + [s.path for s in split.report + split.validation]
    bar = Bar(PREFIX, "reading the images (colour mode)", len(paths))
    with bar:
        color = files_color(_counted(paths, bar), f"the images in {data_dir}")
    if color == schema.GRAY:
        _say(f"the images in {data_dir} are grayscale: training on them as anomalib does (the channel repeated); the model folder "
             "takes grayscale frames")
    return color


def _counted(paths: list[Path], bar: Bar):
    for path in paths:
        yield path
        bar.advance()


def fit(spec: Spec, images: list[Path], work: Path, say=_say) -> Fitted:
    """PaDiM fitted on ``images`` with anomalib's Engine, checkpoint in ``work``, and the images' cross-fitted scores."""
    import time

    start = time.monotonic()
    # The fitting images are linked into a folder of their own, outside the hidden work folder: anomalib warns about
    # (and may one day skip) images under hidden directories.
    with tempfile.TemporaryDirectory(prefix="inspectd-fit-") as root:
        (Path(root) / "good").mkdir()
        for number, image in enumerate(images):
            (Path(root) / "good" / f"{number:06d}{image.suffix.lower()}").symlink_to(image.resolve())
        with quiet():
            model = _padim(spec, say)
            say(f"fitting PaDiM {spec.name()} on {len(images)} good images")
            keep = crossfit.keep_embeddings()
            _fit(model, Path(root), work, keep)
    with Bar(PREFIX, f"cross-fitting: scoring each image by a model fitted without it ({min(crossfit.FOLDS, len(images))} folds)",
             min(crossfit.FOLDS, len(images))) as bar, quiet():
        scores = crossfit.out_of_fold_scores(model.model, keep.embeddings, (spec.size.height, spec.size.width), advance=bar.advance)
    return Fitted(spec, work, scores, time.monotonic() - start)


def export_model(fitted: Fitted, split: roles.Split, choice: thresholds.Choice, color: str, work: Path, out: Path):
    """The model folder, verified on the report images, with the threshold and the roles of the images recorded."""
    fit_digests = tuple(roles.digest(p) for p in split.fit)
    image_roles = schema.ImageRoles(fit=fit_digests, threshold=fit_digests, threshold_cross_fitted=True,
                                    chose=tuple(roles.digest(s.path) for s in split.validation))
    samples = [calibration.Sample(s.path, s.anomalous) for s in split.report]
    note = f"set by inspectd train on {len(split.fit)} good images of its fitting set, each scored by a model fitted without it"
    exported = export_verified(work / "model.ckpt", work / "model", samples=samples, threshold=choice.record(note=note),
                               roles=image_roles, prefix=PREFIX, color=color,
                               progress=lambda message: _say(message.replace(str(work), str(out))))
    shutil.rmtree(work / "engine", ignore_errors=True)
    return exported


def report_lines(samples: list[calibration.Sample], scores: np.ndarray, threshold: float) -> list[str]:
    """What the exported model does at its threshold on the images used for neither fitting nor the threshold."""
    labels = np.array([s.anomalous for s in samples], dtype=bool)
    good, defective = scores[~labels], scores[labels]
    lines = [f"on {len(samples)} images used for neither fitting nor the threshold (the station's runtime, the exported folder):"]
    if good.size:
        lines.append(f"  false rejects  {Rate(int((good > threshold).sum()), int(good.size))} of {good.size} good images")
    if defective.size:
        lines.append(f"  caught         {Rate(int((defective > threshold).sum()), int(defective.size))} of {defective.size} defective images")
        lines.append(f"  image AUROC    {auroc(scores, labels):.4f}")
    else:
        lines.append("  caught         not measured: no defective images (put some in test/<defect> to see what the model catches)")
    return lines


def _padim(spec: Spec, say=_say):
    import timm
    import torch
    from anomalib.models import Padim
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    config = timm.get_pretrained_cfg(spec.backbone)
    transform = Compose([Resize((spec.size.height, spec.size.width), antialias=True), Normalize(mean=list(config.mean), std=list(config.std))])
    layers = list(spec.layers or ())
    torch.manual_seed(0)  # PaDiM keeps a random choice of features: the same data and settings give the same model
    try:
        model = Padim(backbone=spec.backbone, layers=layers, pre_trained=spec.weights == "hub", n_features=spec.n_features,
                      pre_processor=PreProcessor(transform=transform), evaluator=False, visualizer=False)
    except (ValueError, RuntimeError) as exc:
        raise InspectdError(f"--backbone {spec.backbone} --layers {' '.join(layers)} --n-features {spec.n_features}: "
                            f"{str(exc).splitlines()[0]}") from None
    except OSError as exc:  # the hub's download failed after the check (a network that went away)
        raise InspectdError(f"--weights hub: {spec.backbone}'s weights could not be downloaded ({str(exc).splitlines()[0][:160]})",
                            fix=f"use --weights offline ({', '.join(backbone_weights.OFFLINE)}) or a PATH to a timm state dict") from None
    if len(model.model.layers) != len(layers):
        raise InspectdError(f"--layers {' '.join(layers)}: some are not feature layers of {spec.backbone} (anomalib dropped them); see the warning above")
    features = model.model.feature_extractor.feature_extractor
    if spec.weights == "offline":
        backbone_weights.load_into(features, backbone_weights.offline_state_dict(spec.backbone), f"offline weights for {spec.backbone}")
        say(f"loaded offline ImageNet weights for {spec.backbone}")
    elif spec.weights not in ("hub", "random"):
        backbone_weights.load_into(features, backbone_weights.file_state_dict(spec.weights), spec.weights)
    elif spec.weights == "random":
        say(f"{spec.backbone} has RANDOM weights: fine for testing the pipeline, not for finding defects")
    return model


def _fit(model, folder: Path, work: Path, keep) -> None:
    from anomalib.data import Folder
    from anomalib.engine import Engine

    # Only good images, no validation: the threshold is cross-fitted and the report is on images the Engine never sees.
    datamodule = Folder(name="inspectd", root=folder, normal_dir="good", train_batch_size=8, eval_batch_size=8, num_workers=0, seed=0,
                        test_split_mode="none", val_split_mode="none")
    engine = Engine(accelerator="cpu", devices=1, default_root_dir=work / "engine", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, limit_val_batches=0,
                    callbacks=[keep, lightning_bar(PREFIX, "fitting on the training images")])
    engine.fit(model=model, datamodule=datamodule)
    engine.trainer.save_checkpoint(work / "model.ckpt")
