"""The demo station: a synthetic scene (``scene``) and the small real model that ships for it."""

from __future__ import annotations

import importlib
from pathlib import Path

from inspectd.daemon.errors import InspectdError

DEMO_MODEL = "demo-mug"


def demo_model() -> Path:
    """The demo model folder installed with the package (the repository's models/demo-mug)."""
    try:
        locations = list(importlib.import_module("inspectd.models").__path__)  # a namespace package: data only
    except ModuleNotFoundError:
        locations = []
    for location in locations:
        if (Path(location) / DEMO_MODEL / "inspectd.json").is_file():
            return Path(location) / DEMO_MODEL
    raise InspectdError(f"inspectd.models/{DEMO_MODEL}: the demo model is not installed with this inspectd; "
                        f"reinstall the package (pip install inspectd, or the .deb), or pass --model DIR")
