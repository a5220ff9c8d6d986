"""A model folder the runtime cannot honour is refused with one line naming the file, the field and the fix."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

import cv2
import numpy as np

from conftest import cli
from inspectd.daemon.cli import main


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
    """`inspectd infer` on a broken folder, in this process (the CLI's own main; test_intact_folder_is_accepted
    and the exit-78 tests run it as a separate process): exit 2, one line, nothing scored."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["infer", str(folder), str(image)])
    assert code == 2, out.getvalue() + err.getvalue()
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inspectd: "), err.getvalue()
    assert out.getvalue() == ""
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_intact_folder_is_accepted(folder, image):
    result = cli("infer", folder, image)
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
        (lambda m: m["preprocess"]["resize"].update(antialias=False), "preprocess.resize.antialias"),
        (lambda m: m["model"].update(type="patchcore"), "model.type"),
        (lambda m: m["runtime"].update(inference_precision="int4"), "runtime.inference_precision"),
        (lambda m: m["input"].update(width=300), "preprocess"),
        (lambda m: m["threshold"].update(value=0), "threshold.value"),
        (lambda m: m["threshold"].update(value=-3.5), "threshold.value"),
        (lambda m: m.pop("self_test"), "self_test"),
        (lambda m: m["self_test"].update(frames=[]), "self_test.frames"),
        (lambda m: m["self_test"].update(max_relative_error=float("inf")), "self_test.max_relative_error"),
        (lambda m: m["runtime"]["precision_checks"]["f16"].update(status="maybe"), "runtime.precision_checks.f16.status"),
        (lambda m: m["outputs"].update(score="nope"), "outputs.score"),  # valid JSON, but not the graph's
    ],
)
def test_bad_field(folder, image, change, field):
    edit_metadata(folder, change)
    refused(folder, image, "inspectd.json", f"field {field}: ")


def test_not_a_folder(tmp_path, image):
    refused(tmp_path / "nowhere", image, "model folder not found")


def rewrite_self_test(folder: Path, change) -> None:
    """Change selftest.npz and record its new sha256 and size, as a consistent (but wrong) export would."""
    from inspectd.daemon.schema import sha256_of

    path = folder / "selftest.npz"
    with np.load(path) as data:
        arrays = {key: data[key].copy() for key in data.files}
    change(arrays)
    np.savez_compressed(path, **arrays)
    edit_metadata(folder, lambda meta: meta["files"]["selftest.npz"].update(sha256=sha256_of(path), bytes=path.stat().st_size))


def test_self_test_runs_at_load_at_the_precision_used(demo_model):
    from inspectd.daemon.runtime.model import NATIVE_SUPPORT, Model

    model = Model.load(demo_model)
    assert model.trials and model.trials[-1].passed
    assert model.trials[-1].executed == model.precision
    assert model.trials[-1].frames == len(json.loads((demo_model / "inspectd.json").read_text())["self_test"]["frames"]) >= 3
    assert model.trials[-1].max_score_error <= model.trials[-1].limit
    import openvino as ov

    native = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    for precision, capability in NATIVE_SUPPORT.items():
        if capability not in native:  # never "used" where it would silently run as f32
            assert precision not in [t.requested for t in model.trials]


def test_a_precision_this_cpu_does_not_run_is_reported_as_what_it_runs(demo_model):
    import openvino as ov

    from inspectd.daemon.runtime.model import Model

    if "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU runs f16 natively")
    model = Model.load(demo_model, precision="f16")
    trial = model.trials[0]
    assert trial.requested == "f16" and trial.executed != "f16"  # f32 on an AVX2 CPU, bf16 on one with AVX-512 BF16
    assert f"runs as {trial.executed} here" in trial.summary()
    assert model.precision in (trial.executed, "f32")  # what it ran, or f32 when that failed its self-test


def test_self_test_failing_at_every_precision_exits_78(folder, image, tmp_path):
    """References 3% of the threshold off: the folder does not fit this device, at any precision."""
    threshold = json.loads((folder / "inspectd.json").read_text())["threshold"]["value"]
    rewrite_self_test(folder, lambda a: a.update(reference_scores=(a["reference_scores"] + 0.03 * threshold).astype(np.float32)))
    result = cli("infer", folder, image)
    assert result.returncode == 78, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "self-test fails on this device at every precision" in line and "f32: score error" in line
    config = tmp_path / "station.toml"
    config.write_text(f'[model]\npath = "{folder}"\n[source]\nkind = "directory"\npath = "{tmp_path}"\n[archive]\nenabled = false\n')
    result = cli("check", "--config", config)
    assert result.returncode == 78 and "self-test fails" in result.stderr


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda a: a.update(reference_maps=a["reference_maps"] + np.float32(1e6)), "anomaly-map error"),
        (lambda a: a["reference_scores"].__setitem__(0, a["reference_scores"][0] * -1.0), "verdict flip"),
    ],
)
def test_self_test_catches_maps_and_flips(folder, image, change, expected):
    rewrite_self_test(folder, change)
    result = cli("infer", folder, image)
    assert result.returncode == 78 and expected in result.stderr, result.stderr


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.update(inputs=a["inputs"][:, :64]),
        lambda a: a.update(reference_scores=np.full_like(a["reference_scores"], np.nan)),
        lambda a: a.update(inputs=a["inputs"].astype(np.float64)),
        lambda a: a.pop("reference_maps"),
    ],
)
def test_malformed_self_test(folder, image, change):
    rewrite_self_test(folder, change)
    refused(folder, image, "selftest.npz", "copy")


def test_tampered_self_test_is_caught_by_its_sha256(folder, image):
    data = bytearray((folder / "selftest.npz").read_bytes())
    data[-100] ^= 0xFF
    (folder / "selftest.npz").write_bytes(bytes(data))
    refused(folder, image, "selftest.npz", "sha256")


@pytest.mark.parametrize("name", ["model.bin", "selftest.npz"])
def test_a_truncated_copy_is_caught_by_its_size(folder, image, name):
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    refused(folder, image, str(folder / name), f"files.{name}.bytes", "copy the model folder again")


def test_a_folder_from_before_the_self_test_is_refused(folder, image):
    edit_metadata(folder, lambda meta: (meta.update(schema_version=1), meta.pop("self_test")))
    line = refused(folder, image, "schema_version", "before the on-device self-test", "inspectd export")
    assert "re-export" in line


def test_a_failing_precision_costs_one_frame_not_all(folder, image):
    """The self-test stops at the first frame that fails: a fallback on a slow core is quick."""
    from inspectd.daemon.runtime.model import self_test_every_precision
    from inspectd.daemon.schema import read_model_folder

    threshold = json.loads((folder / "inspectd.json").read_text())["threshold"]["value"]
    rewrite_self_test(folder, lambda a: a["reference_scores"].__setitem__(0, a["reference_scores"][0] + np.float32(0.5 * threshold)))
    trials = self_test_every_precision(read_model_folder(folder))
    assert [t.requested for t in trials] == ["bf16", "f16", "f32"]
    assert all(not t.passed and t.frames == 1 and "on " in t.problem for t in trials)  # the first frame failed: nothing more was run


def test_an_exports_refusal_holds_only_on_a_cpu_of_the_same_name(folder):
    """f16 refused by an export on another kind of CPU (an x86 with AVX-512 FP16 runs other kernels than a Pi) is tried here."""
    import openvino as ov

    from inspectd.daemon.runtime.model import Model

    core = ov.Core()
    if "FP16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU does not run f16 natively")
    here = core.get_property("CPU", "FULL_DEVICE_NAME")

    def refuse_f16_on(cpu: str):
        def change(meta):
            meta["runtime"]["precision_checks"]["f16"] = {"status": "refused", "executed_as": "f16", "why": "too far off"}
            meta["runtime"]["checked_on"]["cpu"] = cpu
        return change

    edit_metadata(folder, refuse_f16_on(here))
    model = Model.load(folder, precision="auto")
    assert "f16" not in [t.requested for t in model.trials]
    assert any(note.startswith("f16: not tried, the export ran it on this CPU and refused it") for note in model.notes), model.notes
    edit_metadata(folder, refuse_f16_on(f"not {here}"))
    assert "f16" in [t.requested for t in Model.load(folder, precision="auto").trials]
