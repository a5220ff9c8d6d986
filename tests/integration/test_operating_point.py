"""The operating point (issue 18): train's images in three roles, a non-square part kept in shape from training to the
station, and the weights checked before any image is read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import cli, needs_export, run_cli
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.evaluation.roles import digest
from inspectd.daemon.schema import read_model_folder

pytestmark = needs_export


@pytest.fixture(scope="module")
def wide_parts(tmp_path_factory) -> Path:
    """Mugs photographed twice as wide as high (512x256)."""
    return generate_station_dataset(tmp_path_factory.mktemp("wide"), n_train=16, n_test_good=6, n_test_per_size=2, width=512, height=256)


@pytest.fixture(scope="module")
def wide_model(wide_parts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wide_run") / "run"
    result = run_cli("train", wide_parts, "--out", out, "--backbone", "resnet18", "--weights", "random", "--image-size", "64", "--keep-aspect")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "input 64x128: the fitting images' aspect ratio" in result.stderr
    assert "--choose (half the defective images choose, the other half report)" in result.stderr  # the suggestion: defects exist
    return out / "model"


def test_a_non_square_part_is_trained_exported_and_verified_in_shape(wide_model, wide_parts):
    meta = read_model_folder(wide_model).metadata
    assert (meta.input.height, meta.input.width) == (64, 128) and meta.preprocess.resize.size == (64, 128)
    assert meta.verification.passed and meta.verification.verdict_flips == 0 and meta.verification.frames == 12
    # the roles, by content: train/good fitted it and, cross-fitted, set its threshold; test/ was verified and reported on
    fit = {digest(p) for p in (wide_parts / "train" / "good").glob("*.png")}
    assert set(meta.images.fit) == fit and meta.images.threshold == meta.images.fit and meta.images.threshold_cross_fitted
    assert meta.threshold.normal_images == 16 and meta.normal_scores.count == 6


def test_the_station_honours_a_non_square_model_as_infer_and_evaluate_do(wide_model, wide_parts, tmp_path):
    from inspectd.daemon.station.config import load
    from inspectd.daemon.station.loop import Station
    from inspectd.daemon.station.outputs.memory import MemoryOutput

    images = sorted((wide_parts / "test").glob("*/*.png"))
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{wide_model}"\n[source]\nkind = "directory"\npath = "{wide_parts / "test" / "stain_large"}"\n'
                      "[archive]\nenabled = false\n")
    memory = MemoryOutput()
    assert Station(load(config), extra_outputs=[memory]).run() == 0
    inferred = {Path(r["image"]).parent.name + "/" + Path(r["image"]).name: r
                for r in map(json.loads, cli("infer", wide_model, *images, "--json", "--no-config").stdout.splitlines())}
    station = sorted(memory.verdicts, key=lambda v: v.frame)
    assert len(station) == 2
    for verdict in station:
        assert verdict.inspection.model_map.shape == (64, 128) and verdict.inspection.anomaly_map().shape == (256, 512)
        assert verdict.score == pytest.approx(inferred["stain_large/" + Path(verdict.source).name]["score"], rel=1e-5)
    evaluated = json.loads(cli("evaluate", wide_model, wide_parts, "--json", "--no-config").stdout)
    assert evaluated["roles"] == {"fit": 0, "threshold": 0, "chose": 0, "neither": 12, "unknown": 0} and evaluated["in_sample"] == []
    by_name = {v["kind"] + "/" + Path(v["image"]).name: v["score"] for v in evaluated["verdicts"]}
    assert by_name.keys() == inferred.keys()
    assert all(by_name[name] == pytest.approx(record["score"], rel=1e-5) for name, record in inferred.items())


def test_evaluate_on_the_fitting_images_says_in_sample(wide_model, wide_parts, tmp_path):
    data = tmp_path / "data"
    (data / "good").mkdir(parents=True)
    for path in sorted((wide_parts / "train" / "good").glob("*.png"))[:5]:
        (data / "good" / f"copy-{path.name}").symlink_to(path)  # renamed: the roles go by content
    (data / "stain").symlink_to(wide_parts / "test" / "stain_large", target_is_directory=True)
    summary = json.loads(cli("evaluate", wide_model, data, "--json", "--no-config").stdout)
    assert summary["roles"]["fit"] == 5 and summary["in_sample"] == ["false_reject_rate"]
    text = cli("evaluate", wide_model, data, "--no-config").stdout
    assert "5 the model was fitted on" in text and "(in-sample: every good image here fitted the model" in text


@pytest.mark.parametrize("weights, backbone, says", [
    ("hub", "resnet18", "--weights hub: resnet18's weights are not in the local cache"),
    ("offline", "resnet18", "--weights offline: no offline weights for backbone 'resnet18'"),
    ("/no/such/file.pth", "resnet18", "--weights /no/such/file.pth: file not found"),
    ("offline", "no_such_net", "--backbone no_such_net: not a timm model name"),
])
def test_weights_are_refused_before_any_image_is_read(weights, backbone, says, tmp_path, monkeypatch):
    """Every image here is broken: a check that came after reading them would name an image instead."""
    data = tmp_path / "data"
    (data / "train" / "good").mkdir(parents=True)
    (data / "test" / "good").mkdir(parents=True)
    for folder in ("train/good", "test/good"):
        for number in range(8):
            (data / folder / f"{number}.png").write_bytes(b"not an image")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no internet here either way; the same line whichever way the hub is missing
    result = run_cli("train", data, "--out", tmp_path / "out", "--backbone", backbone, "--weights", weights)
    errors = [line for line in result.stderr.splitlines() if line.startswith("inspectd: ")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert says in errors[0] and "png" not in errors[0]
    assert not (tmp_path / "out").exists()


def test_choose_fits_the_first_candidate_then_keeps_to_its_budget_and_reports_on_the_other_half(wide_parts, tmp_path):
    """--budget 0: the first candidate (what --backbone and --image-size say) is always fitted and measured, no other."""
    out = tmp_path / "run"
    result = run_cli("train", wide_parts, "--out", out, "--backbone", "resnet18", "--weights", "random", "--image-size", "64",
                     "--choose", "--budget", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    said = result.stderr
    # every other defective image of each kind chooses the model, the others report
    assert "16 good images fit the model and set its threshold" in said
    assert "3 defective images choose the model; 6 good and 3 defective images report (used for neither)" in said
    assert "candidate 1 of 7: resnet18 64x64" in said and "candidate 2 of" not in said
    assert "caught (validation, 95% CI)" in said and "ms Pi 5 (projected)" in said
    assert said.count("not tried within the budget (--budget)") == 6
    assert "chosen: resnet18 64x64, catching " in said
    assert "--choose (half the defective images choose" not in said  # the suggestion is for plain train
    meta = read_model_folder(out / "model").metadata
    assert meta.verification.frames == 9 and (meta.input.height, meta.input.width) == (64, 64)
    assert sorted(p.name for p in out.iterdir()) == ["model", "model.ckpt"]  # no candidate's folder left behind
    # the images that chose it are recorded: evaluate measures on the others
    assert len(meta.images.chose) == 3 and not set(meta.images.chose) & set(meta.images.fit)
    evaluated = json.loads(cli("evaluate", out / "model", wide_parts, "--json", "--no-config").stdout)
    assert evaluated["roles"] == {"fit": 0, "threshold": 0, "chose": 3, "neither": 9, "unknown": 0}
    assert evaluated["measured_on"] == {"images": 9, "good": 6, "defective": 3} and evaluated["in_sample"] == []


def test_choose_keeps_the_candidate_that_catches_most(wide_parts, tmp_path):
    """Two real candidates, measured on the validation images: the one kept is the one the table shows catching most."""
    from inspectd.daemon.evaluation import roles
    from inspectd.export import choose, train
    from inspectd.export.sizes import ImageSize

    split = roles.split(wide_parts, validation=True)
    specs = [train.check(train.Spec("resnet18", ImageSize(64, 64), "random")),
             train.check(train.Spec("tf_efficientnet_lite0", ImageSize(64, 128)))]
    said: list[str] = []
    winner = choose.choose(specs, split.fit, split.validation, 0.05, 0.9, "rgb", tmp_path, 3600.0, train.fit, said.append)
    cells = [re.split(r"\s{2,}", line) for line in said if line.startswith(("resnet18 ", "tf_efficientnet_lite0 "))]
    caught = {row[0]: int(re.search(r"\((\d+)/3;", row[1]).group(1)) for row in cells}
    assert caught.keys() == {"resnet18 64x64", "tf_efficientnet_lite0 64x128"}, said
    assert winner.catch.count == max(caught.values())
    assert any(line.startswith(f"chosen: {winner.name}, catching {winner.catch}") for line in said)
    assert list(tmp_path.iterdir()) == [winner.fitted.work]  # the other candidate's folder removed
    assert (winner.fitted.work / "model.ckpt").is_file()


def test_choose_without_defective_images_says_what_it_cannot_measure(wide_parts, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", wide_parts / "train" / "good", "--out", out, "--backbone", "resnet18", "--weights", "random",
                     "--image-size", "64", "--choose", "--budget", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no defective images: what each candidate catches cannot be measured, so none is chosen for it" in result.stderr
    assert "chosen:" not in result.stderr
    assert read_model_folder(out / "model").metadata.images.chose == ()
