"""``inspectd train``: fit PaDiM with anomalib's own Engine, keep the checkpoint, export a verified model folder.

OUT/model.ckpt is the anomalib checkpoint (for the workstation); OUT/model/ is the model
folder to copy to the Pi.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.runtime.colour import files_color
from inspectd.daemon.schema import GRAY
from inspectd.daemon.runtime.images import list_images

from inspectd.daemon.evaluation.thresholds import DEFAULT_FALSE_REJECT_RATE

from . import weights as backbone_weights
from .exporter import atomic_folder, export_checkpoint
from .progress import lightning_bar, quiet

DEFAULTS = {
    # backbone: (layers, n_features); the first layer has the finest resolution (stride 4)
    "resnet18": (["layer1", "layer2", "layer3"], 100),
    "tf_efficientnet_lite0": (["blocks.1", "blocks.2", "blocks.4"], 100),
    "mobilenetv2_100": (["blocks.1", "blocks.2", "blocks.4"], 100),
}
HOLD_OUT_EVERY = 4  # plain folder of good images: every 4th one is held out to set and measure the threshold
DEFAULT_IMAGE_SIZE = 128  # Lite0 at 128: a quarter of the cost of 256 at the same AUROC (README, "Cheaper backbones")


def _say(message: str) -> None:
    print(f"inspectd train: {message}", file=sys.stderr, flush=True)


def train(
    data_dir: str | Path,
    out: str | Path,
    backbone: str = "tf_efficientnet_lite0",
    weights: str = "offline",
    image_size: int = DEFAULT_IMAGE_SIZE,
    layers: list[str] | None = None,
    n_features: int | None = None,
    force: bool = False,
    false_reject_rate: float = DEFAULT_FALSE_REJECT_RATE,
) -> Path:
    data_dir, out = Path(data_dir), Path(out)
    if out.exists() and not force:
        raise InspectdError(f"{out}: already exists; choose another --out or pass --force to replace it")
    if image_size < 32 or image_size % 32:
        raise InspectdError(f"--image-size {image_size}: must be a multiple of 32 (the backbones' largest stride), e.g. 128, 192 or 256")
    default_layers, default_features = DEFAULTS.get(backbone, (None, None))
    layers, n_features = layers or default_layers, n_features or default_features
    if layers is None or n_features is None:
        raise InspectdError(f"--backbone {backbone}: no default layers/features; pass --layers and --n-features (defaults exist for {', '.join(DEFAULTS)})")

    # The split of a plain folder lives outside the hidden temporary folder: anomalib warns
    # about (and may one day skip) images under hidden directories.
    with atomic_folder(out) as work, tempfile.TemporaryDirectory(prefix="inspectd-split-") as split:
        train_dirs, calibration = _split(data_dir, Path(split))
        color = _color(data_dir, train_dirs, calibration)
        with quiet():
            model = _padim(backbone, weights, image_size, layers, n_features)
            _say(f"fitting PaDiM {backbone} {image_size}x{image_size} on {data_dir}")
            _fit(model, train_dirs, work)
        export_checkpoint(work / "model.ckpt", work / "model", calibration_dir=calibration, threshold_from="calibration",
                          false_reject_rate=false_reject_rate, prefix="inspectd train", color=color,
                          progress=lambda message: _say(message.replace(str(work), str(out))))
        shutil.rmtree(work / "engine", ignore_errors=True)
    _say(f"wrote {out / 'model.ckpt'} and {out / 'model'} (copy {out / 'model'} to the station)")
    return out


def _split(data_dir: Path, split: Path) -> tuple[dict, Path]:
    """anomalib Folder arguments for training, and the calibration folder."""
    if not data_dir.is_dir():
        raise InspectdError(f"{data_dir}: data folder not found; pass an MVTec-layout folder (train/good, test/...) or a folder of good images")
    if (data_dir / "train" / "good").is_dir():
        if not list_images(data_dir / "train" / "good"):
            raise InspectdError(f"{data_dir / 'train' / 'good'}: holds no images; put pictures of good parts there")
        test = data_dir / "test"
        defects = sorted(p for p in test.iterdir() if p.is_dir() and p.name != "good") if test.is_dir() else []
        if not (test / "good").is_dir() or not list_images(test / "good"):
            raise InspectdError(f"{test / 'good'}: missing or empty; calibration needs held-out good images there")
        folder_args = {"root": data_dir, "normal_dir": "train/good", "normal_test_dir": "test/good"}
        if defects:
            folder_args["abnormal_dir"] = [str(p.relative_to(data_dir)) for p in defects]
        return folder_args, test
    images = list_images(data_dir)
    if len(images) < 2 * HOLD_OUT_EVERY:
        raise InspectdError(f"{data_dir}: holds {len(images)} images; PaDiM needs at least {2 * HOLD_OUT_EVERY} pictures of good parts (more is better: 50-200)")
    train_dir, calibration_dir = split / "train", split / "calibration"
    train_dir.mkdir(parents=True)
    calibration_dir.mkdir()
    for number, image in enumerate(images):
        target = calibration_dir if number % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 else train_dir
        (target / image.name).symlink_to(image.resolve())
    return {"root": split, "normal_dir": "train", "test_split_mode": "none", "val_split_mode": "none"}, calibration_dir


def _color(data_dir: Path, folder_args: dict, calibration: Path) -> str:
    """The colour mode of every image training and calibration see: "gray" when all are gray, "rgb" when all are colour.

    anomalib trains on gray files by repeating the channel (PIL's convert("RGB")), and so does
    the runtime with a "gray" folder. A mixed set is refused naming a file of each kind
    (runtime.colour.dataset_color says why).
    """
    root = Path(folder_args["root"])
    folders = [root / folder_args["normal_dir"], *(root / d for d in folder_args.get("abnormal_dir", []))]
    paths = [p for folder in folders for p in list_images(folder)] + list_images_deep(calibration)
    color = files_color(dict.fromkeys(paths), f"the images in {data_dir}")
    if color == GRAY:
        _say(f"the images in {data_dir} are grayscale: training on them as anomalib does (the channel repeated); the model folder "
             "takes grayscale frames")
    return color


def list_images_deep(folder: Path) -> list[Path]:
    """The images of ``folder`` and of its sub-folders (a calibration folder: good/ and a folder per defect)."""
    return list_images(folder) + [p for sub in sorted(p for p in folder.iterdir() if p.is_dir()) for p in list_images(sub)]


def _padim(backbone: str, weights: str, image_size: int, layers: list[str], n_features: int):
    import timm
    from anomalib.models import Padim
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    try:
        config = timm.get_pretrained_cfg(backbone)
    except RuntimeError:
        config = None
    if config is None:
        raise InspectdError(f"--backbone {backbone}: not a timm model name; try tf_efficientnet_lite0, mobilenetv2_100 or resnet18")
    transform = Compose([Resize((image_size, image_size), antialias=True), Normalize(mean=list(config.mean), std=list(config.std))])
    try:
        model = Padim(backbone=backbone, layers=list(layers), pre_trained=weights == "hub", n_features=n_features,
                      pre_processor=PreProcessor(transform=transform), evaluator=False, visualizer=False)
    except (ValueError, RuntimeError) as exc:
        raise InspectdError(f"--backbone {backbone} --layers {' '.join(layers)} --n-features {n_features}: {str(exc).splitlines()[0]}") from None
    if len(model.model.layers) != len(layers):
        raise InspectdError(f"--layers {' '.join(layers)}: some are not feature layers of {backbone} (anomalib dropped them); see the warning above")
    features = model.model.feature_extractor.feature_extractor
    if weights == "offline":
        backbone_weights.load_into(features, backbone_weights.offline_state_dict(backbone), f"offline weights for {backbone}")
        _say(f"loaded offline ImageNet weights for {backbone}")
    elif weights not in ("hub", "random"):
        backbone_weights.load_into(features, backbone_weights.file_state_dict(weights), weights)
    elif weights == "random":
        _say(f"{backbone} has RANDOM weights: fine for testing the pipeline, not for finding defects")
    return model


def _fit(model, folder_args: dict, work: Path) -> None:
    from anomalib.data import Folder
    from anomalib.engine import Engine

    datamodule = Folder(name="inspectd", train_batch_size=8, eval_batch_size=8, num_workers=0, seed=0, **folder_args)
    # A plain folder of good images has nothing to validate on; inspectd calibrates on the held-out ones.
    no_validation = {"limit_val_batches": 0} if folder_args.get("val_split_mode") == "none" else {}
    engine = Engine(accelerator="cpu", devices=1, default_root_dir=work / "engine", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, callbacks=[lightning_bar("inspectd train", "fitting on the training images")], **no_validation)
    engine.fit(model=model, datamodule=datamodule)
    engine.trainer.save_checkpoint(work / "model.ckpt")
