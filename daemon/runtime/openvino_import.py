"""OpenVINO for the station: the runtime without its model converter.

``import openvino`` also imports the converter (``openvino.tools.ovc``), which starts OpenVINO's
telemetry: on every start it forks the process (a copy holding the station's GPIO lines and
sockets for up to 3 s) to send a Google Analytics event, looking up the collector's address on the
plant's DNS, and it writes ``~/intel/``, unless ``~/intel/openvino_telemetry`` says no. A station
converts no models, so it imports OpenVINO without the converter; the workstation's export takes
the converter itself (``from openvino.tools.ovc import convert_model``).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

CONVERTER = "openvino.tools.ovc"


def import_openvino() -> ModuleType:
    """The ``openvino`` module; when this is its first import, without the converter (its import fails
    and openvino's own ``__init__`` skips it). A later ``from openvino.tools.ovc import ...`` still works."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    sys.modules[CONVERTER] = None  # type: ignore[assignment]  # None in sys.modules makes that import fail
    try:
        return importlib.import_module("openvino")
    finally:
        if sys.modules.get(CONVERTER, "") is None:
            del sys.modules[CONVERTER]
