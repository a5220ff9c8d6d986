"""inspectd.json, defined once in daemon/schema.py: written and read back equal, and refused field by field when wrong."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DEMO_MODEL
from inspectd.daemon.errors import ModelFolderError
from inspectd.daemon.schema import (
    HEAD_FORMS,
    INFERENCE_PRECISIONS,
    PRECISION_STATUSES,
    THRESHOLD_SOURCES,
    CheckedOn,
    FileEntry,
    Files,
    GraphInput,
    Head,
    ModelInfo,
    ModelMetadata,
    Normalize,
    NormalScores,
    Outputs,
    PrecisionCheck,
    PrecisionChecks,
    Preprocess,
    Resize,
    Runtime,
    SelfTest,
    Threshold,
    Verification,
    Versions,
    read_model_folder,
)

FILE = "/models/m/inspectd.json"


def demo_json() -> dict:
    return json.loads((DEMO_MODEL / "inspectd.json").read_text())


def text_of(meta: ModelMetadata) -> str:
    with tempfile.TemporaryDirectory() as folder:
        meta.write(Path(folder))
        return (Path(folder) / "inspectd.json").read_text()


def test_the_demo_folder_round_trips_byte_for_byte():
    meta = ModelMetadata.from_json(demo_json(), FILE)
    assert ModelMetadata.from_json(meta.to_json(), FILE) == meta
    assert text_of(meta) == (DEMO_MODEL / "inspectd.json").read_text()  # the layout written today, unchanged
    assert meta.threshold.value == pytest.approx(146.103104836339) and meta.model.backbone == "tf_efficientnet_lite0"
    assert read_model_folder(DEMO_MODEL).metadata == meta


# Generated metadata: every section, every optional field present or not, sizes that agree.
texts = st.text(max_size=20)
names = st.text(min_size=1, max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6)
not_negative = st.floats(min_value=0, allow_infinity=False) | st.integers(0, 10**6)
positive = st.floats(min_value=0, exclude_min=True, allow_infinity=False) | st.integers(1, 10**6)
fractions = st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True)
unit = st.floats(min_value=0, max_value=1)
counts = st.integers(0, 10**9)
pixel_counts = st.integers(1, 8192)
hashes = st.text("0123456789abcdef", min_size=64, max_size=64)
precisions = st.sampled_from(INFERENCE_PRECISIONS)


@st.composite
def input_and_preprocess(draw) -> tuple[GraphInput, Preprocess]:
    height, width = draw(pixel_counts), draw(pixel_counts)
    at_least = st.integers(max(height, width), 8192)  # a crop fits inside what the resize gives
    resize, crop = draw(st.sampled_from([
        ((height, width), None),  # exact resize
        (draw(at_least), (height, width)),  # shorter edge, then crop
        ((draw(st.integers(height, 8192)), draw(st.integers(width, 8192))), (height, width)),  # exact resize, then crop
    ]))
    normalize = Normalize(mean=draw(st.tuples(finite, finite, finite)), std=draw(st.tuples(positive, positive, positive)))
    preprocess = Preprocess(resize=Resize(size=resize), center_crop=crop, normalize=normalize, recorded_in_checkpoint=draw(st.booleans()))
    return GraphInput(height=height, width=width), preprocess


checks = st.builds(PrecisionCheck, status=st.sampled_from(PRECISION_STATUSES), executed_as=precisions,
                   max_relative_score_error=st.none() | not_negative, verdict_flips=st.none() | counts, why=st.none() | texts)
metadata = st.builds(
    lambda sizes, **fields: ModelMetadata(input=sizes[0], preprocess=sizes[1], **fields),
    input_and_preprocess(),
    created=st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat(timespec="seconds")),
    model=st.builds(ModelInfo, backbone=names, layers=st.lists(texts, min_size=1, max_size=4).map(tuple), n_features=st.integers(1, 10**4),
                    feature_positions=st.integers(1, 10**6), checkpoint=names, checkpoint_sha256=hashes),
    outputs=st.builds(Outputs, anomaly_map=names, score=names),
    head=st.none() | st.builds(Head, form=st.sampled_from(HEAD_FORMS), block=st.integers(1, 1000), distance_scale_log2=st.integers(-60, 60),
                               squared_distance_cap=positive, kept_at_f32=texts),
    threshold=st.builds(Threshold, value=positive, source=st.sampled_from(THRESHOLD_SOURCES), f1=st.none() | unit, quantile=st.none() | fractions,
                        normal_images=st.none() | counts, anomalous_images=st.none() | counts, checkpoint_value=st.none() | positive,
                        note=st.none() | texts),
    normal_scores=st.none() | st.builds(NormalScores, count=st.integers(1, 10**6), mean=finite, std=not_negative, min=finite, p50=finite,
                                        p95=finite, p99=finite, max=finite),
    runtime=st.builds(Runtime, inference_precision=precisions, weights=texts,
                      verified_precisions=st.lists(precisions, min_size=1, max_size=3).map(tuple),
                      precision_checks=st.builds(PrecisionChecks, f32=checks, bf16=checks, f16=checks),
                      checked_on=st.builds(CheckedOn, cpu=texts, openvino=texts)),
    versions=st.builds(Versions, inspectd=texts, anomalib=texts, openvino=texts, torch=texts, pytorch_lightning=texts),
    files=st.builds(Files, **{name: st.builds(FileEntry, sha256=hashes, bytes=st.integers(1, 2**40))
                              for name in ("model_xml", "model_bin", "selftest_npz")}),
    calibration_image_auroc=st.none() | unit,
    verification=st.builds(Verification, frames=st.integers(1, 10**5), max_abs_score_delta=not_negative, max_relative_score_error=not_negative,
                           worst_frame=texts, verdict_flips=counts, flipped_frames=st.lists(texts, max_size=3).map(tuple),
                           min_map_correlation=st.floats(-1, 1), max_map_delta_relative=not_negative,
                           max_relative_score_error_allowed=not_negative, passed=st.booleans()),
    self_test=st.builds(SelfTest, frames=st.lists(texts, min_size=1, max_size=8).map(tuple), max_relative_error=fractions,
                        max_relative_error_reduced=fractions),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metadata)
def test_generated_metadata_round_trips(meta):
    written = text_of(meta)
    assert ModelMetadata.from_json(json.loads(written), FILE) == meta
    assert ModelMetadata.from_json(meta.to_json(), FILE) == meta


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numbers_in(data: dict, keys: tuple = ()) -> list[tuple[tuple, int | None]]:
    """Where every number of the JSON is: the keys to its field, and its index when it is an item of a list."""
    found = []
    for key, value in data.items():
        if isinstance(value, dict):
            found += numbers_in(value, (*keys, key))
        elif is_number(value):
            found.append(((*keys, key), None))
        elif isinstance(value, list):
            found += [((*keys, key), index) for index, item in enumerate(value) if is_number(item)]
    return found


def refusal(data, field: str) -> str:
    with pytest.raises(ModelFolderError) as caught:
        ModelMetadata.from_json(data, FILE)
    line = str(caught.value)
    assert "\n" not in line and line.startswith(f"{FILE}: field {field}: "), line
    assert "; " in line  # and the fix
    return line


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meta=metadata, data=st.data())
def test_every_number_is_checked_for_type_and_finiteness(meta, data):
    broken = copy.deepcopy(meta.to_json())
    keys, index = data.draw(st.sampled_from(numbers_in(broken)))
    parent = broken
    for key in keys[:-1]:
        parent = parent[key]
    bad = data.draw(st.sampled_from([math.nan, math.inf, -math.inf, True, False, "1", [1]]))
    if index is None:
        parent[keys[-1]] = bad
    else:
        parent[keys[-1]][index] = bad
    refusal(broken, ".".join(keys))  # a number inside a list: the list's field


def edit(change) -> dict:
    data = demo_json()
    change(data)
    return data


HEAD = {"form": "cholesky-triangular", "block": 20, "distance_scale_log2": -9, "squared_distance_cap": 4092.0,
        "kept_at_f32": "depthwise convolutions; the anomaly map from the square root on"}  # as export/graph.py writes it

BROKEN = [
    # wrong types
    (lambda m: m["input"].update(height="128"), "input.height", "must be an integer"),
    (lambda m: m["model"].update(layers="blocks.1"), "model.layers", "must be a list of strings"),
    (lambda m: m["preprocess"]["normalize"].update(mean=[0.5, 0.5]), "preprocess.normalize.mean", "a list of 3 numbers"),
    (lambda m: m.update(threshold=193.2), "threshold", "must be an object"),
    (lambda m: m["verification"].update(passed="yes"), "verification.passed", "true or false"),
    (lambda m: m["self_test"].update(frames=["a", 3]), "self_test.frames", "a list of strings"),
    # NaN and infinities
    (lambda m: m["threshold"].update(value=math.nan), "threshold.value", "finite"),
    (lambda m: m["normal_scores"].update(p99=math.inf), "normal_scores.p99", "finite"),
    (lambda m: m["preprocess"]["normalize"].update(std=[0.5, -math.inf, 0.5]), "preprocess.normalize.std", "finite"),
    # out of range
    (lambda m: m["threshold"].update(value=-3.5), "threshold.value", "positive"),
    (lambda m: m["threshold"].update(value=0), "threshold.value", "positive"),
    (lambda m: m["input"].update(width=0), "input.width", "positive"),
    (lambda m: m["preprocess"]["resize"].update(size=[128, -128]), "preprocess.resize.size", "positive"),
    (lambda m: m["preprocess"]["normalize"].update(std=[0.5, 0, 0.5]), "preprocess.normalize.std", "positive"),
    (lambda m: m["self_test"].update(max_relative_error=1.5), "self_test.max_relative_error", "between 0 and 1"),
    (lambda m: m["self_test"].update(max_relative_error_reduced=0), "self_test.max_relative_error_reduced", "between 0 and 1"),
    (lambda m: m["threshold"].update(f1=1.01), "threshold.f1", "between 0 and 1"),
    (lambda m: m.update(calibration_image_auroc=-0.1), "calibration_image_auroc", "between 0 and 1"),
    (lambda m: m["normal_scores"].update(std=-1.0), "normal_scores.std", "0 or more"),
    (lambda m: m["verification"].update(verdict_flips=-1), "verification.verdict_flips", "0 or more"),
    (lambda m: m["verification"].update(min_map_correlation=1.5), "verification.min_map_correlation", "between -1 and 1"),
    (lambda m: m["files"]["model.bin"].update(bytes=0), "files.model.bin.bytes", "positive"),
    (lambda m: m["files"]["model.xml"].update(sha256="00478b7e"), "files.model.xml.sha256", "sha256"),
    (lambda m: m.update(created="yesterday"), "created", "ISO 8601"),
    (lambda m: m["runtime"].update(verified_precisions=["f32", "int8"]), "runtime.verified_precisions", "f32"),
    (lambda m: m["runtime"]["precision_checks"]["bf16"].update(status="maybe"), "runtime.precision_checks.bf16.status", "not-checked"),
    (lambda m: m["threshold"].update(source="guess"), "threshold.source", "calibration-f1"),
    (lambda m: m["threshold"].update(rule="anomalous if score >= value"), "threshold.rule", "the only rule"),
    (lambda m: m["input"].update(color_order="RGB"), "input.color_order", "BGR"),
    (lambda m: m["input"].update(value_range=[0, 1]), "input.value_range", "[0, 255]"),
    (lambda m: m["preprocess"]["resize"].update(antialias=False), "preprocess.resize.antialias", "anomalib"),
    (lambda m: m["model"].update(type="patchcore"), "model.type", "padim"),
    (lambda m: m["input"].update(width=300), "preprocess", "[128, 300]"),
    # booleans are not numbers
    (lambda m: m["input"].update(height=True), "input.height", "got true"),
    (lambda m: m["threshold"].update(value=True), "threshold.value", "got true"),
    (lambda m: m["self_test"].update(max_relative_error=False), "self_test.max_relative_error", "got false"),
    (lambda m: m.update(schema_version=True), "schema_version", "integer"),
    # missing, null, unknown
    (lambda m: m["threshold"].pop("value"), "threshold.value", "is missing"),
    (lambda m: m.pop("self_test"), "self_test", "is missing"),
    (lambda m: m["files"].pop("selftest.npz"), "files.selftest.npz", "is missing"),
    (lambda m: m["runtime"]["precision_checks"].pop("f16"), "runtime.precision_checks.f16", "is missing"),
    (lambda m: m.update(verification=None), "verification", "is missing"),
    (lambda m: m["threshold"].update(treshold=5.0), "threshold.treshold", "not a field"),
    (lambda m: m.update(head={**HEAD, "form": "full-matrix"}), "head.form", "cholesky-triangular"),
    (lambda m: m.update(head={**HEAD, "block": 0}), "head.block", "positive"),
    (lambda m: m.update(head={**HEAD, "distance_scale_log2": -9.5}), "head.distance_scale_log2", "integer"),
    (lambda m: m.update(head={**HEAD, "squared_distance_cap": math.inf}), "head.squared_distance_cap", "finite"),
    (lambda m: m.update(head={k: v for k, v in HEAD.items() if k != "block"}), "head.block", "is missing"),
    # schema and version
    (lambda m: m.update(schema_version=3), "schema_version", "reads version 2 only"),
    (lambda m: (m.update(schema_version=1), m.pop("self_test")), "schema_version", "before the on-device self-test"),
    (lambda m: m.update(schema_version="2"), "schema_version", "integer"),
    (lambda m: m.update(schema="anomalib"), "schema", "not an inspectd model folder"),
]


@pytest.mark.parametrize("change,field,problem", BROKEN, ids=[f"{field}:{problem}" for _, field, problem in BROKEN])
def test_broken_metadata_is_refused_naming_the_file_and_field(change, field, problem):
    line = refusal(edit(change), field)
    assert problem in line, line


def test_numbers_read_as_their_fields_type():
    meta = ModelMetadata.from_json(edit(lambda m: (m["threshold"].update(value=193, f1=1), m["input"].update(height=128))), FILE)
    assert type(meta.threshold.value) is float and type(meta.threshold.f1) is float and type(meta.input.height) is int
    assert type(meta.preprocess.resize.size) is tuple and type(meta.model.layers) is tuple


def test_not_an_object():
    with pytest.raises(ModelFolderError, match=f"^{FILE}: must hold a JSON object, got \\[\\]; re-export"):
        ModelMetadata.from_json([], FILE)


def test_optional_fields_may_be_absent_and_are_not_written():
    data = edit(lambda m: (m.pop("calibration_image_auroc"), m["threshold"].pop("note"), m.update(normal_scores=None), m.pop("head")))
    meta = ModelMetadata.from_json(data, FILE)
    assert meta.calibration_image_auroc is None and meta.threshold.note is None and meta.normal_scores is None
    assert meta.head is None  # as in folders exported before the f16-safe head
    with_head = edit(lambda m: m.update(head=HEAD))
    assert ModelMetadata.from_json(with_head, FILE).head.distance_scale_log2 == -9
    assert ModelMetadata.from_json(with_head, FILE).to_json() == with_head
    assert meta.to_json() == data  # absent stays absent, null stays null


def test_export_cannot_make_what_the_runtime_would_refuse():
    """The limits hold for objects made in code too: export cannot write a NaN threshold or numpy's bool."""
    with pytest.raises(ModelFolderError, match="field value: must be a finite number, got NaN"):
        Threshold(value=math.nan, source="calibration-f1")
    with pytest.raises(ModelFolderError, match="field value: must be positive"):
        Threshold(value=-1.0, source="checkpoint")
    meta = ModelMetadata.from_json(demo_json(), FILE)
    with pytest.raises(ModelFolderError, match="field passed: must be true or false"):
        replace(meta.verification, passed=np.bool_(True))
