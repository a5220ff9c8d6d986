"""The model folder: the one contract between the workstation and the Pi.

A model folder holds ``model.xml`` + ``model.bin`` (OpenVINO IR) and ``inspectd.json``, the
metadata that says how to feed the graph and how to read its outputs. ``export/`` writes it,
the daemon reads it and refuses, with one clear line, anything it cannot honour.
See README.md ("The model folder") for every field.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspectd.daemon.errors import InspectdError

METADATA_FILE = "inspectd.json"
SCHEMA = "inspectd-model"
SCHEMA_VERSION = 2  # 2: the on-device self-test (selftest.npz) and precisions checked only where they ran
SELFTEST_FILE = "selftest.npz"
FOLDER_FILES = ("model.xml", "model.bin", SELFTEST_FILE)
THRESHOLD_SOURCES = ("checkpoint", "calibration-quantile", "calibration-f1")
INFERENCE_PRECISIONS = ("f32", "f16", "bf16")
PRECISION_STATUSES = ("verified", "refused", "not-checked")  # refused: it ran at that precision and failed


@dataclass(frozen=True)
class Preprocessing:
    """How a frame becomes the graph's input: everything training did before the network."""

    input_height: int
    input_width: int
    resize: int | tuple[int, int]  # torchvision semantics: int = shorter edge, (h, w) = exact
    center_crop: tuple[int, int] | None
    mean: tuple[float, float, float]  # applied inside the graph; recorded for people
    std: tuple[float, float, float]


@dataclass(frozen=True)
class Threshold:
    value: float  # raw PaDiM score units; a frame is anomalous when its score is above it
    source: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class SelfTestSpec:
    frames: tuple[str, ...]
    limit: float  # f32: largest score/map error, as a fraction of the threshold
    reduced_limit: float  # bf16/f16


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    metadata: dict[str, Any]
    preprocessing: Preprocessing
    threshold: Threshold
    map_output: str
    score_output: str
    inference_precision: str  # the safe default: f32
    verified_precisions: tuple[str, ...]  # precisions the export ran (not emulated) and verified, fastest first
    refused_precisions: tuple[str, ...]  # precisions the export ran and saw fail: not worth a try
    self_test: SelfTestSpec | None  # None only while an export is still writing the folder
    model_sha256: str

    @property
    def xml_path(self) -> Path:
        return self.path / "model.xml"

    @property
    def self_test_path(self) -> Path:
        return self.path / SELFTEST_FILE


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Fields:
    """Typed access to one JSON object, with errors that name the file and the field."""

    def __init__(self, data: Any, file: Path, where: str = "") -> None:
        self.file, self.where = file, where
        if not isinstance(data, dict):
            self.fail(where or "top level", "must be a JSON object")
        self.data = data

    def fail(self, field: str, problem: str) -> None:
        raise InspectdError(
            f"{self.file}: field '{field}' {problem}; re-export the model folder with "
            f"'inspectd export' (or fix the field by hand)"
        )

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        if key not in self.data or self.data[key] is None:
            if optional:
                return None
            self.fail(self.name(key), "is missing")
        value = self.data[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(self.name(key), f"must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            self.fail(self.name(key), f"must be {_kind_name(kind)}, got {json.dumps(value)[:40]}")
        return value

    def section(self, key: str) -> _Fields:
        return _Fields(self.get(key, dict), self.file, self.name(key))

    def positive_int(self, key: str) -> int:
        value = self.get(key, int)
        if value <= 0:
            self.fail(self.name(key), f"must be a positive integer, got {value}")
        return value

    def int_pair(self, key: str, optional: bool = False) -> tuple[int, int] | None:
        value = self.get(key, list, optional)
        if value is None:
            return None
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            self.fail(self.name(key), f"must be [height, width] in pixels, got {value}")
        return (value[0], value[1])

    def fraction(self, key: str) -> float:
        value = self.get(key, (int, float))
        if not (math.isfinite(value) and 0 < value < 1):
            self.fail(self.name(key), f"must be a fraction between 0 and 1, got {value}")
        return float(value)

    def triple(self, key: str) -> tuple[float, float, float]:
        value = self.get(key, list)
        if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            self.fail(self.name(key), f"must be three numbers (one per colour channel), got {value}")
        return (float(value[0]), float(value[1]), float(value[2]))


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def read_model_folder(folder: str | Path, check_hashes: bool = True, provisional: bool = False) -> ModelFolder:
    """Validate a model folder and return what the runtime needs from it.

    ``provisional``: a folder that ``inspectd export`` is still writing, without its self-test.

    Raises InspectdError naming the file and field for anything missing, malformed,
    tampered with, or written by a schema version this inspectd does not know.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InspectdError(
            f"{folder}: model folder not found; pass the folder written by 'inspectd export' "
            f"(it holds {METADATA_FILE}, model.xml and model.bin)"
        )
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise InspectdError(f"{meta_path}: missing; this is not an inspectd model folder, export one with 'inspectd export'")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InspectdError(f"{meta_path}: not valid JSON ({exc}); re-export the model folder") from None
    top = _Fields(metadata, meta_path)
    if top.get("schema", str) != SCHEMA:
        top.fail("schema", f"must be '{SCHEMA}'")
    version = top.get("schema_version", int)
    if version != SCHEMA_VERSION:
        older = " (written before the on-device self-test existed)" if version < SCHEMA_VERSION else ""
        raise InspectdError(
            f"{meta_path}: field 'schema_version' is {version}{older} but this inspectd reads version "
            f"{SCHEMA_VERSION} only; re-export the checkpoint with this inspectd ('inspectd export CKPT --out DIR'), "
            f"or install the inspectd that exported it"
        )

    model = top.section("model")
    if model.get("type", str) != "padim":
        model.fail("model.type", "must be 'padim' (the only model type this runtime runs)")

    graph_input = top.section("input")
    height, width = graph_input.positive_int("height"), graph_input.positive_int("width")
    for key, expected in (("layout", "NHWC"), ("color_order", "BGR"), ("dtype", "float32")):
        if graph_input.get(key, str) != expected:
            graph_input.fail(f"input.{key}", f"must be '{expected}' (the only input this runtime feeds)")

    pre = top.section("preprocess")
    resize = pre.section("resize")
    if resize.get("method", str) != "bilinear" or resize.get("antialias", bool) is not True:
        resize.fail("preprocess.resize", "must be method 'bilinear' with antialias true (what anomalib trains with)")
    size = resize.get("size", (int, list))
    if isinstance(size, list):
        size = resize.int_pair("size")
    elif size <= 0:
        resize.fail("preprocess.resize.size", "must be positive")
    crop = pre.int_pair("center_crop", optional=True)
    normalize = pre.section("normalize")
    if normalize.get("in_graph", bool) is not True:
        normalize.fail("preprocess.normalize.in_graph", "must be true (this runtime feeds un-normalised pixels)")
    mean, std = normalize.triple("mean"), normalize.triple("std")
    expected_input = crop or (size if isinstance(size, tuple) else None)
    if expected_input is not None and expected_input != (height, width):
        pre.fail("preprocess", f"gives {list(expected_input)} pixels but input is [{height}, {width}]")

    outputs = top.section("outputs")
    map_output, score_output = outputs.get("anomaly_map", str), outputs.get("score", str)

    preprocessing = Preprocessing(height, width, size, crop, mean, std)
    if provisional:  # no threshold, precisions or self-test yet
        model_sha256 = top.section("files").section("model.bin").get("sha256", str)
        return ModelFolder(folder, metadata, preprocessing, Threshold(math.nan, "provisional", {}), map_output, score_output,
                           "f32", ("f32",), (), None, model_sha256)

    threshold = top.section("threshold")
    value = threshold.get("value", (int, float))
    if not (math.isfinite(value) and value > 0):
        threshold.fail("threshold.value", f"must be a finite positive raw score, got {value} (a threshold at or below 0 rejects every part)")
    source = threshold.get("source", str)
    if source not in THRESHOLD_SOURCES:
        threshold.fail("threshold.source", f"must be one of {', '.join(THRESHOLD_SOURCES)}")

    runtime = top.section("runtime")
    precision = runtime.get("inference_precision", str)
    if precision not in INFERENCE_PRECISIONS:
        runtime.fail("runtime.inference_precision", f"must be one of {', '.join(INFERENCE_PRECISIONS)}")
    verified = runtime.get("verified_precisions", list)
    if not all(p in INFERENCE_PRECISIONS for p in verified):
        runtime.fail("runtime.verified_precisions", f"must list only {', '.join(INFERENCE_PRECISIONS)}")
    checks = runtime.section("precision_checks")
    refused = []
    for name in checks.data:
        status = checks.section(name).get("status", str)
        if name not in INFERENCE_PRECISIONS or status not in PRECISION_STATUSES:
            checks.fail(f"runtime.precision_checks.{name}", f"must be a precision ({', '.join(INFERENCE_PRECISIONS)}) with a status of {', '.join(PRECISION_STATUSES)}")
        if status == "refused":
            refused.append(name)

    self_test = top.section("self_test")
    frames = self_test.get("frames", list)
    if not frames or not all(isinstance(name, str) for name in frames):
        self_test.fail("self_test.frames", "must list the names of the self-test frames")
    spec = SelfTestSpec(tuple(frames), self_test.fraction("max_relative_error"),
                        self_test.fraction("max_relative_error_reduced"))

    files = top.section("files")
    hashes = {}
    for name in FOLDER_FILES:
        path = folder / name
        if not path.is_file():
            raise InspectdError(f"{path}: missing from the model folder; copy the whole folder written by 'inspectd export'")
        hashes[name] = files.section(name).get("sha256", str)
        if check_hashes and sha256_of(path) != hashes[name]:
            raise InspectdError(
                f"{path}: sha256 does not match files.{name}.sha256 in {meta_path.name}; the file is "
                f"corrupt or was replaced; copy the model folder again from the workstation"
            )

    return ModelFolder(
        path=folder,
        metadata=metadata,
        preprocessing=preprocessing,
        threshold=Threshold(float(value), source, dict(threshold.data)),
        map_output=map_output,
        score_output=score_output,
        inference_precision=precision,
        verified_precisions=tuple(verified),
        refused_precisions=tuple(refused),
        self_test=spec,
        model_sha256=hashes["model.bin"],
    )

