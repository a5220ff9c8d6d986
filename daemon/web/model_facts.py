"""The model the station is set to run: read from its folder's inspectd.json (``schema``), without loading it."""

from __future__ import annotations

from pathlib import Path

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.schema import read_model_folder
from inspectd.daemon.web.shift import Normal
from inspectd.daemon.web.station_facts import StationFacts

THRESHOLD_SOURCES = {
    "checkpoint": "the checkpoint's own (anomalib's validation threshold)",
    "calibration-f1": "F1-optimal on the calibration images",
    "calibration-quantile": "a quantile of the calibration good images",
    "calibration-frr": "for a target false-reject rate on the calibration good images",
}


def model_facts(station: StationFacts) -> tuple[dict[str, object], Normal | None]:
    """What the page shows about the model folder, and its normal scores (for the drift figures)."""
    try:
        folder = read_model_folder(station.model_path, check_hashes=False)
    except InspectdError as exc:
        return {"path": station.model_path, "problem": str(exc)}, None
    meta = folder.metadata
    threshold = meta.threshold
    how = THRESHOLD_SOURCES.get(threshold.source, threshold.source)
    if threshold.target_false_reject_rate is not None:
        how += f" ({threshold.target_false_reject_rate:.1%} false rejects)"
    if threshold.normal_images is not None:
        how += f", {threshold.normal_images} good" + (f" and {threshold.anomalous_images} anomalous" if threshold.anomalous_images else "") + " images"
    override = station.threshold_override
    applied = override if override is not None else threshold.value
    normal = meta.normal_scores
    facts = {
        "path": str(Path(station.model_path)), "id": meta.files.model_bin.sha256, "backbone": meta.model.backbone,
        "layers": list(meta.model.layers), "input": {"height": meta.input.height, "width": meta.input.width, "color": meta.input.color},
        "created": meta.created, "verified_precisions": list(meta.runtime.verified_precisions),
        "threshold": {"folder": threshold.value, "applied": applied, "rule": threshold.rule,
                      "how": (f"[model] threshold = {override:g} in {station.file} (overrides the folder's {threshold.value:.4g}, {how})"
                              if override is not None else how)},
        "normal_scores": None if normal is None else {"mean": normal.mean, "std": normal.std, "count": normal.count},
        "calibration_image_auroc": meta.calibration_image_auroc, "openvino": meta.versions.openvino,
    }
    usable = normal is not None and normal.std > 0
    return facts, Normal(normal.mean, normal.std) if usable else None
