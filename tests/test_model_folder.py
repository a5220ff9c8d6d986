"""A model folder the runtime cannot honour is refused with one line naming the file, the field and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli

import cv2
import numpy as np


@pytest.fixture()
def folder(demo_model, tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(demo_model, copy)
    return copy


@pytest.fixture()
def image(tmp_path) -> Path:
    path = tmp_path / "part.png"
    cv2.imwrite(str(path), np.full((120, 160, 3), 128, dtype=np.uint8))
    return path


def edit_metadata(folder: Path, change) -> None:
    path = folder / "inspectd.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def refused(folder: Path, image: Path, *expected: str) -> str:
    result = run_cli("infer", folder, image)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inspectd: "), result.stderr
    assert result.stdout == ""
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_intact_folder_is_accepted(folder, image):
    result = run_cli("infer", folder, image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] in ("PASS", "REJECT")


@pytest.mark.parametrize("name", ["model.bin", "model.xml", "inspectd.json"])
def test_missing_file(folder, image, name):
    (folder / name).unlink()
    refused(folder, image, str(folder / name), "missing")


def test_tampered_weights(folder, image):
    data = bytearray((folder / "model.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.bin").write_bytes(bytes(data))
    refused(folder, image, "model.bin", "sha256", "copy the model folder again")


def test_unknown_schema_version(folder, image):
    edit_metadata(folder, lambda meta: meta.update(schema_version=99))
    refused(folder, image, "inspectd.json", "schema_version", "99")


def test_corrupt_metadata(folder, image):
    (folder / "inspectd.json").write_text("{ not json")
    refused(folder, image, "inspectd.json", "not valid JSON")


@pytest.mark.parametrize(
    "change,field",
    [
        (lambda m: m["threshold"].update(value=float("nan")), "threshold.value"),
        (lambda m: m["threshold"].pop("value"), "threshold.value"),
        (lambda m: m["input"].update(height="256"), "input.height"),
        (lambda m: m["input"].update(color_order="RGB"), "input.color_order"),
        (lambda m: m["preprocess"]["resize"].update(antialias=False), "preprocess.resize"),
        (lambda m: m["model"].update(type="patchcore"), "model.type"),
        (lambda m: m["runtime"].update(inference_precision="int4"), "runtime.inference_precision"),
        (lambda m: m["input"].update(width=300), "preprocess"),
    ],
)
def test_bad_field(folder, image, change, field):
    edit_metadata(folder, change)
    refused(folder, image, "inspectd.json", f"'{field}'")


def test_not_a_folder(tmp_path, image):
    refused(tmp_path / "nowhere", image, "model folder not found")


def test_unverified_precision_is_refused(demo_model):
    """The demo's Lite0 distances overflow f16: the export did not verify it, so the runtime refuses it."""
    from inspectd.daemon.errors import InspectdError
    from inspectd.daemon.model import Model

    meta = json.loads((demo_model / "inspectd.json").read_text())
    assert meta["runtime"]["verified_precisions"] == ["f32"]
    assert meta["runtime"]["precision_checks"]["f16"]["accepted"] is False
    with pytest.raises(InspectdError, match="model.precision 'f16' was not verified"):
        Model.load(demo_model, precision="f16")
    assert Model.load(demo_model).precision == "f32"
