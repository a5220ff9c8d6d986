"""Reading an anomalib PaDiM checkpoint (.ckpt) as it is handed over: weights, pre-processing, threshold.

Nothing is downloaded: the backbone is built without pre-trained weights and every weight
comes from the checkpoint itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.schema import sha256_of

PADIM_KEYS = ("model.idx", "model.gaussian.mean", "model.gaussian.inv_covariance")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Preprocess:
    """anomalib's pre-processor transform, as plain data: Resize [+ CenterCrop] + Normalize."""

    resize: int | tuple[int, int]
    center_crop: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    recorded: bool  # False when the checkpoint did not record it and anomalib's default was assumed

    def output_size(self) -> tuple[int, int] | None:
        return self.center_crop or (self.resize if isinstance(self.resize, tuple) else None)

    def transform(self):
        """The torchvision transform training applied (the verification's reference)."""
        from torchvision.transforms.v2 import CenterCrop, Compose, Normalize, Resize

        steps = [Resize(self.resize, antialias=True)]
        if self.center_crop:
            steps.append(CenterCrop(self.center_crop))
        return Compose([*steps, Normalize(mean=list(self.mean), std=list(self.std))])


@dataclass
class PadimCheckpoint:
    path: Path
    sha256: str
    model: Any  # anomalib.models.image.padim.torch_model.PadimModel, eval mode
    backbone: str
    layers: list[str]
    preprocess: Preprocess
    threshold: float | None  # raw image threshold, when the checkpoint holds a usable one
    threshold_problem: str  # why it is unusable, when it is
    lightning_version: str  # of the pytorch_lightning that wrote it


def load_checkpoint(path: str | Path, input_size: tuple[int, int] | None = None) -> PadimCheckpoint:
    path = Path(path)
    if not path.is_file():
        raise InspectdError(f"{path}: checkpoint not found; pass the .ckpt file written by anomalib (or 'inspectd train')")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types (zip, pickle, EOF, key errors) for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InspectdError(f"{path}: not a readable PyTorch checkpoint ({first[:160]}); copy the .ckpt again, it may be truncated") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InspectdError(f"{path}: not a Lightning checkpoint (no 'state_dict'); pass the .ckpt that anomalib's Engine wrote")
    state = checkpoint["state_dict"]
    missing = [key for key in PADIM_KEYS if key not in state]
    if missing:
        raise InspectdError(
            f"{path}: not a PaDiM checkpoint (no {', '.join(missing)}); inspectd exports anomalib's Padim model only"
        )
    hparams = checkpoint.get("hyper_parameters") or {}
    backbone, layers = hparams.get("backbone"), hparams.get("layers")
    if not isinstance(backbone, str) or not isinstance(layers, (list, tuple)) or not layers:
        raise InspectdError(f"{path}: hyper_parameters lack 'backbone'/'layers'; it was not saved by anomalib's Padim")

    from anomalib.models.image.padim.torch_model import PadimModel

    model = PadimModel(backbone=backbone, layers=list(layers), pre_trained=False, n_features=int(state["model.idx"].numel()))
    weights = {key[len("model.") :]: value for key, value in state.items() if key.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise InspectdError(f"{path}: weights do not fit a PaDiM {backbone} with layers {list(layers)} ({str(exc).splitlines()[0][:160]})") from None
    model.eval()

    threshold, problem = _image_threshold(state)
    return PadimCheckpoint(
        path=path,
        sha256=sha256_of(path),
        model=model,
        backbone=backbone,
        layers=list(layers),
        preprocess=_preprocess(checkpoint, path, input_size),
        threshold=threshold,
        threshold_problem=problem,
        lightning_version=str(checkpoint.get("pytorch-lightning_version", "unknown")),
    )


def _image_threshold(state: dict[str, torch.Tensor]) -> tuple[float | None, str]:
    """The checkpoint's raw image threshold if it is usable, else (None, why not)."""
    value = state.get("post_processor._image_threshold")
    if value is None:
        return None, "the checkpoint holds no image threshold"
    value = float(value)
    if not math.isfinite(value):
        return None, f"the checkpoint's image threshold is {value} (the model was never validated)"
    low, high = (float(state.get(f"post_processor.image_{k}", math.nan)) for k in ("min", "max"))
    if math.isfinite(low) and math.isfinite(high) and not (low <= value <= high):
        return None, f"the checkpoint's image threshold {value:.4g} lies outside the validation scores [{low:.4g}, {high:.4g}]"
    if value <= 0:
        return None, f"the checkpoint's image threshold is {value} (PaDiM scores are positive)"
    return value, ""


def _preprocess(checkpoint: dict[str, Any], path: Path, input_size: tuple[int, int] | None) -> Preprocess:
    spec = (checkpoint.get("anomalib_pre_processor_config") or {}).get("transform")
    if spec is None:
        if input_size is None:
            raise InspectdError(
                f"{path}: records no pre-processing; pass --input-size H W (the image size it was trained at)"
            )
        return Preprocess(tuple(input_size), None, IMAGENET_MEAN, IMAGENET_STD, recorded=False)
    steps = spec["init_args"]["transforms"] if spec.get("class_path", "").endswith(".Compose") else [spec]
    resize = crop = mean = std = None
    for step in steps:
        kind, args = step.get("class_path", "").rsplit(".", 1)[-1], step.get("init_args", {})
        if kind == "Resize" and resize is None and crop is None:
            if args.get("interpolation", "bilinear") != "bilinear" or args.get("max_size") is not None:
                raise InspectdError(f"{path}: pre-processing Resize {args} is not supported; train with bilinear Resize and no max_size")
            size = args["size"]
            resize = (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) and len(size) == 2 else int(size[0] if isinstance(size, (list, tuple)) else size)
        elif kind == "CenterCrop" and resize is not None and crop is None:
            size = args["size"]
            crop = (int(size[0]), int(size[-1])) if isinstance(size, (list, tuple)) else (int(size), int(size))
        elif kind == "Normalize" and mean is None:
            mean, std = tuple(float(v) for v in args["mean"]), tuple(float(v) for v in args["std"])
        else:
            raise InspectdError(
                f"{path}: pre-processing step {kind} is not supported (inspectd runs Resize, CenterCrop, Normalize in that order); "
                f"move augmentations to the datamodule and re-train"
            )
    if resize is None or mean is None:
        raise InspectdError(f"{path}: pre-processing lacks a Resize or a Normalize; inspectd needs both to reproduce training")
    preprocess = Preprocess(resize, crop, mean, std, recorded=True)
    output = preprocess.output_size()
    if input_size is not None and output is not None and tuple(input_size) != output:
        raise InspectdError(
            f"--input-size {input_size[0]} {input_size[1]} differs from the {output[0]}x{output[1]} the checkpoint was trained at; "
            f"PaDiM's statistics are per position, so drop --input-size or re-train at that size"
        )
    if output is None:
        raise InspectdError(f"{path}: Resize to a shorter edge without CenterCrop gives a variable input size; re-train with Resize((H, W))")
    return preprocess
