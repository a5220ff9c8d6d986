"""The model folder: the one contract between the workstation and the Pi, and the one definition of ``inspectd.json``.

A model folder holds ``model.xml`` + ``model.bin`` (OpenVINO IR), ``selftest.npz`` and
``inspectd.json``, the metadata that says how to feed the graph, how to read its outputs and
how to judge them. Each JSON object of ``inspectd.json`` is a frozen dataclass below, its
fields in the order they are written, each with its limits beside it; a value out of type
or range is refused when the object is made, from JSON or by ``inspectd export`` alike.

    >>> folder = read_model_folder("models/demo-mug")                 # doctest: +SKIP
    >>> folder.metadata.threshold.value, folder.metadata.model.backbone  # doctest: +SKIP
    >>> ModelMetadata.from_json(folder.metadata.to_json(), "inspectd.json") == folder.metadata  # doctest: +SKIP

Every refusal is one ModelFolderError naming the file, the field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

from inspectd.daemon.errors import ModelFolderError
from inspectd.daemon.fields import Check, convert, fits, problem, setting, show_json
from inspectd.daemon.files import FileRefused

METADATA_FILE = "inspectd.json"
SCHEMA = "inspectd-model"
SCHEMA_VERSION = 2  # 2: the on-device self-test (selftest.npz) and precisions checked only where they ran
SELFTEST_FILE = "selftest.npz"
THRESHOLD_SOURCES = ("checkpoint", "calibration-frr", "calibration-f1", "calibration-quantile")
# calibration-frr: a one-sided tolerance bound (evaluation.thresholds): an order statistic of enough good images, or a Gumbel fit
# of fewer; "empirical" and "normal-fit" are the estimators of folders written before it
THRESHOLD_METHODS = ("order-statistic", "gumbel-fit", "empirical", "normal-fit")
THRESHOLD_RULE = "anomalous if score > value"
INFERENCE_PRECISIONS = ("f32", "f16", "bf16")
PRECISION_STATUSES = ("verified", "refused", "not-checked")  # refused: it ran at that precision and failed
HEAD_FORMS = ("cholesky-triangular",)
RGB, GRAY = "rgb", "gray"  # the colour modes: what the model was trained on, so what frames it takes
COLOR_MODES = (RGB, GRAY)  # what the model was trained on: colour images, or grayscale ones (fed as three equal channels)
FIX = "re-export the model folder with 'inspectd export' (or fix the field by hand)"
FOLDER_FIX = "copy the whole folder written by 'inspectd export'"
COPY_FIX = "the copy is incomplete or the file was replaced; copy the model folder again from the workstation"
MAX_METADATA_BYTES = 16 * 1024 * 1024  # inspectd.json: a few KB, normal scores of thousands of images included


# Limits of their own (``fields.setting(checks=...)``): each takes a value already of the field's type and says what is
# wrong with it, or None.


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


def not_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more, got {value}"


def fraction(value: float) -> str | None:
    return None if 0 < value < 1 else f"must be a fraction between 0 and 1, got {value}"


def unit_interval(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be between 0 and 1, got {value}"


def pixels(value: int | tuple[int, ...]) -> str | None:
    sizes = value if isinstance(value, tuple) else (value,)
    return None if all(size > 0 for size in sizes) else f"must be a positive number of pixels, got {_show(value)}"


def not_empty(value: str | tuple) -> str | None:
    return None if len(value) else "must not be empty"


def sha256_hex(value: str) -> str | None:
    return None if re.fullmatch(r"[0-9a-f]{64}", value) else f"must be a sha256 (64 lowercase hex digits), got {_show(value)}"


def iso_time(value: str) -> str | None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return f"must be an ISO 8601 time, got {_show(value)}"
    return None


def one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}, got {_show(value)}"


def each_one_of(*choices: str) -> Check:
    return lambda values: next((f"must list only {', '.join(choices)}, got {_show(v)}" for v in values if v not in choices), None)


def equals(expected: Any, why: str) -> Check:
    return lambda value: None if value == expected else f"must be {_show(expected)} ({why}), got {_show(value)}"


class Section:
    """One JSON object of inspectd.json as a frozen dataclass: checked when made (``fields.problem``), written and read by
    its fields."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for item in fields(self):
            found = problem(item, getattr(self, item.name), hints[item.name], table="an object", shown=_show)
            if found:
                raise ModelFolderError(found[0], key=_json_name(item), fix=found[1] or FIX)

    def to_json(self) -> dict[str, Any]:
        written = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None or item.metadata.get("null"):
                written[_json_name(item)] = _to_json(value)
        return written

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        by_name = {_json_name(item): item for item in fields(cls)}
        for key in data:
            if key not in by_name:
                raise ModelFolderError(f"is not a field of {METADATA_FILE} version {SCHEMA_VERSION}", key=key,
                                       fix="remove it, or use the inspectd that wrote the folder")
        hints, values = _hints(cls), {}
        for name, item in by_name.items():
            if data.get(name) is None:
                if item.default is None or (name not in data and item.metadata.get("added")):
                    continue
                raise ModelFolderError("is missing", key=name, fix=FIX)
            try:
                # what does not convert is passed on as it is: the section's own check names it
                values[item.name] = convert(data[name], hints[item.name], lambda section, value: section.from_json(value))[0]
            except ModelFolderError as exc:
                raise _within(name, exc) from None
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class ModelInfo(Section):
    type: str = setting(checks=(equals("padim", "the only model type this runtime runs"),), default="padim")
    backbone: str = setting(checks=(not_empty,))
    layers: tuple[str, ...] = setting(checks=(not_empty,))
    n_features: int = setting(checks=(positive,))
    feature_positions: int = setting(checks=(positive,))
    checkpoint: str = setting(checks=(not_empty,))  # the checkpoint's file name
    checkpoint_sha256: str = setting(checks=(sha256_hex,))


@dataclass(frozen=True, kw_only=True)
class GraphInput(Section):
    """The graph's input tensor: (1, height, width, 3) float32, BGR, 0..255, as OpenCV and the cameras give.

    ``color`` is what the model was trained on, so what frames it takes: "rgb" colour frames; "gray"
    grayscale ones, fed as the gray channel three times (as anomalib trains on them: PIL's
    convert("RGB")). Folders exported before the field existed are colour.
    """

    height: int = setting(checks=(pixels,))
    width: int = setting(checks=(pixels,))
    color: str = setting(checks=(one_of(*COLOR_MODES),), default=RGB, added=True)
    layout: str = setting(checks=(equals("NHWC", "the only input this runtime feeds"),), default="NHWC")
    color_order: str = setting(checks=(equals("BGR", "the only input this runtime feeds"),), default="BGR")
    dtype: str = setting(checks=(equals("float32", "the only input this runtime feeds"),), default="float32")
    value_range: tuple[int, int] = setting(checks=(equals((0, 255), "the only input this runtime feeds"),), default=(0, 255))


@dataclass(frozen=True, kw_only=True)
class Resize(Section):
    size: int | tuple[int, int] = setting(checks=(pixels,))  # torchvision semantics: int = shorter edge, [h, w] = exact
    method: str = setting(checks=(equals("bilinear", "what anomalib trains with"),), default="bilinear")
    antialias: bool = setting(checks=(equals(True, "what anomalib trains with"),), default=True)


@dataclass(frozen=True, kw_only=True)
class Normalize(Section):
    mean: tuple[float, float, float]  # of training, recorded for people: applied inside the graph
    std: tuple[float, float, float] = setting(checks=(lambda std: None if min(std) > 0 else f"must be positive for every channel, got {_show(std)}",))
    in_graph: bool = setting(checks=(equals(True, "this runtime feeds un-normalised pixels"),), default=True)


@dataclass(frozen=True, kw_only=True)
class Preprocess(Section):
    """What training did before the network; the runtime does the resize and crop, the graph the rest."""

    resize: Resize
    center_crop: tuple[int, int] | None = setting(checks=(pixels,), default=None, null=True)  # [h, w] after the resize
    normalize: Normalize
    recorded_in_checkpoint: bool  # False when the checkpoint did not record it and anomalib's default was assumed

    def output_size(self) -> tuple[int, int] | None:
        """[h, w] of what reaches the graph; None when it depends on the frame (shorter-edge resize, no crop)."""
        return self.center_crop or (self.resize.size if isinstance(self.resize.size, tuple) else None)


@dataclass(frozen=True, kw_only=True)
class Outputs(Section):
    anomaly_map: str = setting(checks=(not_empty,))  # 1x1xHxW
    score: str = setting(checks=(not_empty,))  # (1,): the map's maximum


@dataclass(frozen=True, kw_only=True)
class Head(Section):
    """How the graph computes PaDiM's Mahalanobis distance (export/graph.py), so that f16 can hold it.

    ``form`` "cholesky-triangular": the squared distance is ||2^k L^T delta||^2, L the Cholesky factor of each
    position's inverse covariance, applied in blocks of ``block`` rows of the triangle; clamped at
    ``squared_distance_cap`` (in those scaled units) before the square root; the map multiplied by 2^-k after
    the smoothing, so scores and maps come out in raw PaDiM units whatever k is. ``kept_at_f32``: the layers marked
    to run at f32 whatever precision the device runs the rest at. Absent from folders exported before it existed,
    whose graphs square the distance through the full inverse covariances, unscaled (f16 may overflow: the
    self-test says so and the runtime falls back).
    """

    form: str = setting(choices=HEAD_FORMS)
    block: int = setting(checks=(positive,))
    distance_scale_log2: int = setting()  # k; chosen at export from the folder's own scores
    squared_distance_cap: float = setting(checks=(positive,))
    kept_at_f32: str = setting()  # layers the graph runs at f32 at every precision (OpenVINO's "precise"), for people


@dataclass(frozen=True, kw_only=True)
class Threshold(Section):
    """The raw-score threshold and how it was chosen; the fields after ``source`` depend on the source."""

    value: float = setting(checks=(positive,))  # raw PaDiM score units; at or below 0 every part would be rejected
    source: str = setting(checks=(one_of(*THRESHOLD_SOURCES),))
    f1: float | None = setting(checks=(unit_interval,), default=None)  # calibration-f1
    quantile: float | None = setting(checks=(fraction,), default=None)  # calibration-quantile
    target_false_reject_rate: float | None = setting(checks=(fraction,), default=None)  # calibration-frr
    method: str | None = setting(checks=(one_of(*THRESHOLD_METHODS),), default=None)  # calibration-frr
    confidence: float | None = setting(checks=(fraction,), default=None)  # calibration-frr: at most the target with this confidence
    false_reject_expected: float | None = setting(checks=(unit_interval,), default=None)  # calibration-frr: the line's rate, median estimate
    false_reject_bounds: tuple[float, float] | None = setting(
        checks=(lambda b: None if 0 <= b[0] <= b[1] <= 1 else f"must be [low, high] within [0, 1], got {_show(b)}",),
        default=None)  # each at ``confidence``
    normal_images: int | None = setting(checks=(not_negative,), default=None)
    anomalous_images: int | None = setting(checks=(not_negative,), default=None)
    rule: str = setting(checks=(equals(THRESHOLD_RULE, "the only rule this runtime applies"),), default=THRESHOLD_RULE)
    checkpoint_value: float | None = setting(checks=(positive,), default=None)  # the checkpoint's own, when moved off a calibration score
    note: str | None = None


def digests(values: tuple[str, ...]) -> str | None:
    return next((f"must list image digests (16 lowercase hex digits), got {_show(v)}" for v in values if not re.fullmatch(r"[0-9a-f]{16}", v)),
                None)


@dataclass(frozen=True, kw_only=True)
class ImageRoles(Section):
    """Which images fitted the model and which set its threshold, each by the first 16 hex digits of its file's sha256:
    ``evaluate`` and ``calibrate`` tell which of the images they are given played a part (``evaluation.roles``)."""

    fit: tuple[str, ...] | None = setting(checks=(digests,), default=None, null=True)  # None: not known (exported from a checkpoint)
    threshold: tuple[str, ...] = setting(checks=(digests,))
    threshold_cross_fitted: bool  # the threshold's images are the fitting ones, each scored by a model fitted without it
    chose: tuple[str, ...] = setting(checks=(digests,), default=(), added=True)  # the defective images train --choose chose it on


@dataclass(frozen=True, kw_only=True)
class NormalScores(Section):
    """Scores of the calibration good images: what drift monitoring compares live scores with."""

    count: int = setting(checks=(positive,))
    mean: float
    std: float = setting(checks=(not_negative,))
    min: float
    p50: float
    p95: float
    p99: float
    max: float


@dataclass(frozen=True, kw_only=True)
class PrecisionCheck(Section):
    """One precision at export: verified, refused (it ran and failed), or not-checked (this CPU ran it as ``executed_as``)."""

    status: str = setting(checks=(one_of(*PRECISION_STATUSES),))
    executed_as: str = setting(checks=(one_of(*INFERENCE_PRECISIONS),))
    max_relative_score_error: float | None = setting(checks=(not_negative,), default=None)  # of the threshold
    verdict_flips: int | None = setting(checks=(not_negative,), default=None)
    why: str | None = None


@dataclass(frozen=True, kw_only=True)
class PrecisionChecks(Section):
    f32: PrecisionCheck
    bf16: PrecisionCheck
    f16: PrecisionCheck

    def get(self, precision: str) -> PrecisionCheck:
        return {"f32": self.f32, "bf16": self.bf16, "f16": self.f16}[precision]


@dataclass(frozen=True, kw_only=True)
class CheckedOn(Section):
    cpu: str
    openvino: str


@dataclass(frozen=True, kw_only=True)
class Runtime(Section):
    inference_precision: str = setting(checks=(one_of(*INFERENCE_PRECISIONS),), default="f32")  # the safe default
    weights: str  # how the weights are stored, for people
    verified_precisions: tuple[str, ...] = setting(checks=(not_empty, each_one_of(*INFERENCE_PRECISIONS)))  # only those that really ran, fastest first
    precision_checks: PrecisionChecks
    checked_on: CheckedOn  # the export's CPU

    @property
    def refused_precisions(self) -> tuple[str, ...]:
        """Precisions the export ran and saw fail: not worth a try on the device."""
        return tuple(p for p in INFERENCE_PRECISIONS if self.precision_checks.get(p).status == "refused")


@dataclass(frozen=True, kw_only=True)
class Versions(Section):
    inspectd: str
    anomalib: str
    openvino: str
    torch: str
    pytorch_lightning: str  # that wrote the checkpoint


@dataclass(frozen=True, kw_only=True)
class FileEntry(Section):
    sha256: str = setting(checks=(sha256_hex,))
    bytes: int = setting(checks=(positive,))


@dataclass(frozen=True, kw_only=True)
class Files(Section):
    """The folder's other files, checked at every load."""

    model_xml: FileEntry = setting(json_name="model.xml")
    model_bin: FileEntry = setting(json_name="model.bin")
    selftest_npz: FileEntry = setting(json_name=SELFTEST_FILE)

    def entries(self) -> tuple[tuple[str, FileEntry], ...]:
        """(file name, entry) for each file."""
        return tuple((_json_name(item), getattr(self, item.name)) for item in fields(self))


@dataclass(frozen=True, kw_only=True)
class Verification(Section):
    """The export's comparison with the torch model; a folder is written only when it passed."""

    frames: int = setting(checks=(positive,))
    max_abs_score_delta: float = setting(checks=(not_negative,))
    max_relative_score_error: float = setting(checks=(not_negative,))  # of the threshold
    worst_frame: str
    verdict_flips: int = setting(checks=(not_negative,))
    flipped_frames: tuple[str, ...]
    min_map_correlation: float = setting(checks=(lambda r: None if -1 <= r <= 1 else f"must be a correlation between -1 and 1, got {r}",))
    max_map_delta_relative: float = setting(checks=(not_negative,))
    max_relative_score_error_allowed: float = setting(checks=(not_negative,))
    passed: bool


@dataclass(frozen=True, kw_only=True)
class SelfTest(Section):
    """The frames of selftest.npz the runtime replays at every load, and the errors it allows."""

    file: str = setting(checks=(equals(SELFTEST_FILE, "the runtime reads that file"),), default=SELFTEST_FILE)
    frames: tuple[str, ...] = setting(checks=(not_empty,))  # names of the frames, in the order of selftest.npz
    max_relative_error: float = setting(checks=(fraction,))  # f32: largest score/map error, as a fraction of the threshold
    max_relative_error_reduced: float = setting(checks=(fraction,))  # bf16/f16 (tighter: the self-test sees only a handful of frames)
    rule: str = ("at every load, on the device: each frame's score and coarse map within the limit (a fraction of the "
                 "threshold; the reduced limit for bf16/f16), no verdict flip, nothing non-finite; else the next precision, down to f32")


@dataclass(frozen=True, kw_only=True)
class Draft(Section):
    """A folder that ``inspectd export`` is still writing: enough to run the graph, no threshold or self-test yet.

    Never written to disk: the runtime compiles it untested, at a named precision (see ``runtime.model.Model``).
    """

    model: ModelInfo
    input: GraphInput
    preprocess: Preprocess
    outputs: Outputs

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_input_size(self.input, self.preprocess)


@dataclass(frozen=True, kw_only=True)
class ModelMetadata(Section):
    """``inspectd.json``: README.md ("The model folder") says what each field is for."""

    schema: str = setting(checks=(equals(SCHEMA, "an inspectd model folder"),), default=SCHEMA)
    schema_version: int = setting(checks=(equals(SCHEMA_VERSION, "the version this inspectd reads"),), default=SCHEMA_VERSION)
    created: str = setting(checks=(iso_time,))  # UTC time of the export
    model: ModelInfo
    input: GraphInput
    preprocess: Preprocess
    outputs: Outputs
    head: Head | None = setting(default=None, added=True)  # absent from folders exported before the f16-safe head
    threshold: Threshold
    normal_scores: NormalScores | None = setting(default=None, null=True)  # None without calibration good images
    runtime: Runtime
    versions: Versions
    files: Files
    calibration_image_auroc: float | None = setting(checks=(unit_interval,), default=None)  # with labelled calibration images
    verification: Verification
    self_test: SelfTest
    images: ImageRoles | None = setting(default=None, added=True)  # None: not recorded (folders written before it)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_input_size(self.input, self.preprocess)

    @classmethod
    def from_json(cls, data: Any, file: str | Path = METADATA_FILE) -> ModelMetadata:
        """Parsed JSON -> the checked metadata; a ModelFolderError naming ``file`` and the field for anything wrong."""
        try:
            if not isinstance(data, dict):
                raise ModelFolderError(f"must hold a JSON object, got {_show(data)}", fix=FIX)
            _check_version(data)
            return super().from_json(data)
        except ModelFolderError as exc:
            raise ModelFolderError(exc.problem, file=file, key=exc.key, fix=exc.fix) from None

    def write(self, folder: Path) -> None:
        """inspectd.json, atomically: a reader sees the old file or the new one, never half of one. When it cannot be
        written (a read-only folder, a full disk), the old file stays, no temporary is left, and the OSError is raised."""
        path = Path(folder) / METADATA_FILE
        temporary = path.with_name(f".{METADATA_FILE}.tmp")
        text = json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"
        created = False
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                created = True
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            if created:
                temporary.unlink(missing_ok=True)
            raise


def _check_input_size(graph_input: GraphInput, preprocess: Preprocess) -> None:
    crop, resize = preprocess.center_crop, preprocess.resize.size
    if crop is not None:  # a shorter-edge resize to n gives at least n x n; a crop larger than the resize fits no frame
        smallest = resize if isinstance(resize, tuple) else (resize, resize)
        if crop[0] > smallest[0] or crop[1] > smallest[1]:
            raise ModelFolderError(f"center_crop {list(crop)} is larger than what resize {_show(resize)} gives: no frame could be "
                                   "inspected", key="preprocess.center_crop", fix=FIX)
    size = preprocess.output_size()
    if size is not None and size != (graph_input.height, graph_input.width):
        raise ModelFolderError(f"gives {list(size)} pixels but input is [{graph_input.height}, {graph_input.width}]",
                               key="preprocess", fix=FIX)


def _check_version(data: dict) -> None:
    """Schema and version first: a folder of another version is refused for that, not for a field it lacks."""
    if data.get("schema") != SCHEMA:
        raise ModelFolderError(f"must be {_show(SCHEMA)}, got {_show(data.get('schema'))}", key="schema",
                               fix="this is not an inspectd model folder; export one with 'inspectd export'")
    version = data.get("schema_version")
    if not fits(version, int):
        raise ModelFolderError(f"must be an integer, got {_show(version)}", key="schema_version", fix=FIX)
    if version != SCHEMA_VERSION:
        older = " (written before the on-device self-test existed)" if version < SCHEMA_VERSION else ""
        raise ModelFolderError(
            f"is {version}{older} but this inspectd reads version {SCHEMA_VERSION} only", key="schema_version",
            fix="re-export the checkpoint with this inspectd ('inspectd export CKPT --out DIR'), or install the inspectd that exported it")


# The machinery: a field's type hint drives the JSON conversion and the type check.

@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _json_name(item: Field) -> str:
    return item.metadata.get("json") or item.name


def _within(name: str, exc: ModelFolderError) -> ModelFolderError:
    return ModelFolderError(exc.problem, key=f"{name}.{exc.key}" if exc.key else name, fix=exc.fix)


def _show(value: Any) -> str:
    return show_json(_to_json(value))


def _to_json(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_json()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


@dataclass(frozen=True)
class Preprocessing:
    """How a frame becomes the graph's input, as the runtime applies it: the graph's size, the resize and the crop."""

    input_height: int
    input_width: int
    resize: int | tuple[int, int]  # torchvision semantics: int = shorter edge, (h, w) = exact
    center_crop: tuple[int, int] | None
    mean: tuple[float, float, float]  # applied inside the graph; recorded for people
    std: tuple[float, float, float]
    color: str = RGB  # the frames the model takes: "rgb", or "gray" (fed as three equal channels)

    @classmethod
    def of(cls, metadata: ModelMetadata | Draft) -> Preprocessing:
        pre = metadata.preprocess
        return cls(metadata.input.height, metadata.input.width, pre.resize.size, pre.center_crop, pre.normalize.mean, pre.normalize.std,
                   metadata.input.color)


@dataclass(frozen=True)
class ModelFolder:
    """A model folder on disk and its checked metadata.

    ``metadata`` is a Draft only inside ``inspectd export``, before the threshold and the self-test exist.
    ``contents``: the bytes of each file, read once (``read_model_folder``) and checked against their sha256; the
    runtime uses these, never the files again (a file overwritten while the station runs cannot reach it).
    """

    path: Path
    metadata: ModelMetadata | Draft
    contents: Mapping[str, bytes | bytearray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def xml_path(self) -> Path:
        return self.path / "model.xml"

    @property
    def self_test_path(self) -> Path:
        return self.path / SELFTEST_FILE

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.of(self.metadata)

    def content(self, name: str) -> bytes | bytearray:
        """A file's bytes: as read and checked with the folder when it was, else read now (an export's draft)."""
        if name in self.contents:
            return self.contents[name]
        try:
            return _read_file(self.path / name, None)
        except OSError as exc:
            raise ModelFolderError(f"cannot be read ({exc.strerror or exc})", file=self.path / name, fix=FOLDER_FIX) from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_model_folder(folder: str | Path, check_hashes: bool = True) -> ModelFolder:
    """Read and check a model folder: its metadata, and each file's size and (unless ``check_hashes`` is False) sha256.

    Every file is read through one descriptor of the folder, opened once: a folder renamed into place while it is
    read (``inspectd install-model``, or ``mv -T``) is read whole from one side of the rename, never half of each.
    The bytes checked are the bytes kept (``ModelFolder.contents``): what runs is what was checked. Only regular
    files are read, inspectd.json within MAX_METADATA_BYTES, each other file within the size inspectd.json gives it.

    Raises ModelFolderError naming the file and field for anything missing, unreadable, malformed, tampered with, or
    written by a schema version this inspectd does not read.
    """
    folder = Path(folder)
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise ModelFolderError("model folder not found", file=folder,
                               fix=f"pass the folder written by 'inspectd export' (it holds {METADATA_FILE}, model.xml and model.bin)") from None
    except OSError as exc:
        raise ModelFolderError(f"cannot be opened ({exc.strerror or exc})", file=folder, fix="check its permissions") from None
    try:
        return _read_folder(folder, descriptor, check_hashes)
    finally:
        os.close(descriptor)


def _read_folder(folder: Path, descriptor: int, check_hashes: bool) -> ModelFolder:
    path = folder / METADATA_FILE
    try:
        text = _read_file(METADATA_FILE, MAX_METADATA_BYTES, dir_fd=descriptor)
    except FileNotFoundError:
        raise ModelFolderError("missing", file=path, fix="this is not an inspectd model folder; export one with 'inspectd export'") from None
    except FileRefused as exc:
        raise ModelFolderError(str(exc), file=path, fix="copy the inspectd.json written by 'inspectd export'") from None
    except OSError as exc:
        raise ModelFolderError(f"cannot be read ({exc.strerror or exc})", file=path, fix="check its permissions") from None
    try:
        data = json.loads(bytes(text).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"not valid JSON ({exc})", file=path, fix="re-export the model folder") from None
    except RecursionError:
        raise ModelFolderError("not valid JSON (arrays or objects nested too deeply)", file=path, fix="re-export the model folder") from None
    metadata = ModelMetadata.from_json(data, path)
    contents: dict[str, bytes | bytearray] = {METADATA_FILE: text}
    for name, entry in metadata.files.entries():
        try:
            info = os.stat(name, dir_fd=descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise FileRefused("is not a regular file")
            if info.st_size != entry.bytes:
                raise ModelFolderError(f"is {info.st_size} bytes but files.{name}.bytes in {METADATA_FILE} says {entry.bytes}",
                                       file=folder / name, fix=COPY_FIX)
            if check_hashes:
                contents[name] = _read_file(name, entry.bytes, dir_fd=descriptor)
        except FileNotFoundError:
            raise ModelFolderError("missing from the model folder", file=folder / name, fix=FOLDER_FIX) from None
        except FileRefused as exc:
            raise ModelFolderError(str(exc), file=folder / name, fix=FOLDER_FIX) from None
        except OSError as exc:
            raise ModelFolderError(f"cannot be read ({exc.strerror or exc})", file=folder / name, fix="check its permissions") from None
        if check_hashes and len(contents[name]) != entry.bytes:
            raise ModelFolderError(f"changed while it was read ({len(contents[name])} bytes, files.{name}.bytes says {entry.bytes})",
                                   file=folder / name, fix=COPY_FIX)
        if check_hashes and hashlib.sha256(contents[name]).hexdigest() != entry.sha256:
            raise ModelFolderError(f"sha256 does not match files.{name}.sha256 in {METADATA_FILE}", file=folder / name,
                                   fix="the file is corrupt or was replaced; copy the model folder again from the workstation")
    return ModelFolder(folder, metadata, contents)


def _read_file(name: str | Path, limit: int | None, *, dir_fd: int | None = None) -> bytearray:
    """A regular file's bytes, at most ``limit`` + 1 of them (all when None), into a writable buffer (OpenVINO takes the
    weights from it without a copy)."""
    opened = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    with open(opened, "rb", buffering=0) as handle:
        info = os.fstat(opened)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused("is not a regular file")
        if limit is not None and info.st_size > limit:
            raise FileRefused(f"is {info.st_size} bytes, more than such a file can be ({limit} at most)")
        wanted = info.st_size + 1 if limit is None else min(info.st_size, limit) + 1
        buffer = bytearray(wanted)
        view, done = memoryview(buffer), 0
        while done < wanted:
            count = handle.readinto(view[done:])
            if not count:
                break
            done += count
        view.release()
    del buffer[done:]
    return buffer
