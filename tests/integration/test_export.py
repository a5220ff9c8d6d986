"""Export -> model folder -> infer, against plain anomalib checkpoints and real images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_export, run_cli, train_plain_anomalib
from inspectd.daemon.schema import ModelMetadata, read_model_folder

pytestmark = needs_export


def written(folder: Path, returned: ModelMetadata | None = None) -> ModelMetadata:
    """The folder's inspectd.json as the station reads it; the same as export returned, in the layout to_json() writes."""
    meta = read_model_folder(folder).metadata
    text = (folder / "inspectd.json").read_text()
    assert text == json.dumps(meta.to_json(), indent=2) + "\n"
    assert ModelMetadata.from_json(json.loads(text), folder / "inspectd.json") == meta
    if returned is not None:
        assert returned == meta
    return meta


def torch_scores(checkpoint: Path, images: list[Path]) -> np.ndarray:
    """anomalib's own pipeline, loaded with anomalib's own loader: the independent reference."""
    import torch
    from anomalib.data.utils.image import read_image
    from anomalib.models import Padim

    module = Padim.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    scores = []
    with torch.no_grad():
        for path in images:
            batch = module.pre_processor.transform(read_image(path, as_tensor=True).unsqueeze(0))
            scores.append(float(module.model(batch).pred_score.reshape(-1)[0]))
    return np.array(scores)


def infer_json(model: Path, images: list[Path]) -> list[dict]:
    result = run_cli("infer", model, *images, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_precisions_recorded_only_where_they_ran(meta: ModelMetadata) -> None:
    """bf16/f16 count as verified only if this CPU really executed them (an AVX2-only CPU runs them as f32)."""
    import openvino as ov

    native = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    runtime = meta.runtime
    for precision, capability in (("bf16", "BF16"), ("f16", "FP16")):
        check = runtime.precision_checks.get(precision)
        if capability in native:
            assert check.executed_as == precision and check.status in ("verified", "refused")
        else:
            assert (check.status, check.executed_as, check.max_relative_score_error, check.verdict_flips) == ("not-checked", "f32", None, None)
            assert precision not in runtime.verified_precisions
    assert runtime.verified_precisions[-1] == "f32" and runtime.precision_checks.f32.status == "verified"


def assert_self_test_holds_real_frames(folder: Path, meta: ModelMetadata) -> None:
    frames = meta.self_test.frames
    assert 3 <= len(frames) <= 8 and len(set(frames)) == len(frames)
    with np.load(folder / "selftest.npz") as data:
        assert data["inputs"].shape == (len(frames), meta.input.height, meta.input.width, 3)
        scores = data["reference_scores"]
    threshold = meta.threshold.value
    assert (scores > threshold).any() and (scores <= threshold).any()  # both sides of the threshold
    assert (folder / "selftest.npz").stat().st_size < 5_000_000


def test_plain_anomalib_cookie_checkpoint_matches_torch(cookie_checkpoint, cookie_model, cookie):
    meta = written(cookie_model)
    assert_precisions_recorded_only_where_they_ran(meta)
    assert_self_test_holds_real_frames(cookie_model, meta)
    verification = meta.verification
    assert verification.passed and verification.verdict_flips == 0
    assert verification.frames == 46
    assert verification.max_relative_score_error <= 0.01
    assert verification.min_map_correlation > 0.999

    images = sorted((cookie / "test").glob("*/*.jpg"))
    records = infer_json(cookie_model, images)
    reference = torch_scores(cookie_checkpoint, images)
    scores = np.array([r["score"] for r in records])
    threshold = meta.threshold.value
    assert np.abs(scores - reference).max() / threshold <= 0.01
    # anomalib's verdict (score >= its threshold) is the one to keep
    checkpoint_threshold = meta.threshold.checkpoint_value or threshold
    assert [r["anomalous"] for r in records] == list(reference >= checkpoint_threshold)
    assert {r["image"] for r in records} == {str(p) for p in images}
    assert all(r["latency_ms"] > 0 and r["threshold"] == pytest.approx(threshold) for r in records)


def test_non_square_and_large_frames_match_torch(circuitboard_checkpoint, circuitboard, tmp_path):
    """1000x667 (the circuitboard as shot) and 2000x1334: where anomalib's own export goes wrong."""
    import cv2

    from inspectd.export.exporter import export_checkpoint

    calibration = tmp_path / "calibration"
    for kind in ("good", "anomaly"):
        (calibration / kind).mkdir(parents=True)
        for path in sorted((circuitboard / "test" / kind).glob("*.jpg"))[:8]:
            image = cv2.imread(str(path))
            assert image.shape[:2] == (667, 1000)
            cv2.imwrite(str(calibration / kind / f"{path.stem}.png"), image)
            cv2.imwrite(str(calibration / kind / f"{path.stem}_2x.png"), cv2.resize(image, (2000, 1334), interpolation=cv2.INTER_CUBIC))
    meta = written(tmp_path / "model", export_checkpoint(circuitboard_checkpoint, tmp_path / "model", calibration_dir=calibration,
                                                         threshold_from="calibration", threshold_for="f1"))
    assert meta.threshold.source == "calibration-f1" and meta.threshold.normal_images == meta.threshold.anomalous_images == 16
    assert meta.verification.verdict_flips == 0
    assert meta.verification.max_relative_score_error <= 0.01

    images = sorted(calibration.glob("*/*.png"))
    records = infer_json(tmp_path / "model", images)
    reference = torch_scores(circuitboard_checkpoint, images)
    scores = np.array([r["score"] for r in records])
    assert np.abs(scores - reference).max() / meta.threshold.value <= 0.01


def test_circuitboard_test_images_no_flips(circuitboard_checkpoint, circuitboard, tmp_path):
    from inspectd.export.exporter import export_checkpoint

    meta = written(tmp_path / "model", export_checkpoint(circuitboard_checkpoint, tmp_path / "model", calibration_dir=circuitboard / "test"))
    assert meta.verification.frames == 70
    assert meta.verification.verdict_flips == 0
    assert meta.verification.max_relative_score_error <= 0.01


def test_nan_threshold_needs_calibration(cookie, tmp_path):
    """A model that was never validated: anomalib stores a NaN threshold; export must not ship it."""
    checkpoint = train_plain_anomalib(cookie, tmp_path / "ckpt", [], validate=False)
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert math.isnan(float(state["post_processor._image_threshold"]))

    result = run_cli("export", checkpoint, "--out", tmp_path / "no_calibration")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "nan" in lines[-1].lower() and "--calibration" in lines[-1]
    assert not (tmp_path / "no_calibration").exists()

    normal_only = tmp_path / "normal_only"
    normal_only.mkdir()
    for path in sorted((cookie / "test" / "good").glob("*.jpg")):
        (normal_only / path.name).symlink_to(path)
    result = run_cli("export", checkpoint, "--out", tmp_path / "frr", "--calibration", normal_only)
    assert result.returncode == 0, result.stderr
    meta = written(tmp_path / "frr")
    # 14 good images cannot bound a 1% false-reject rate without an assumption: a Gumbel fit, and a warning saying so
    assert meta.threshold.source == "calibration-frr" and meta.threshold.target_false_reject_rate == 0.01
    assert meta.threshold.method == "gumbel-fit" and "14 good images are too few for a distribution-free bound" in result.stderr
    assert meta.threshold.confidence == 0.9 and meta.threshold.false_reject_bounds[1] == pytest.approx(0.01, abs=1e-4)
    normal = meta.normal_scores
    assert normal.count == 14 and normal.max < meta.threshold.value
    assert meta.calibration_image_auroc is None  # no defect images to measure it on

    result = run_cli("export", checkpoint, "--out", tmp_path / "f1", "--calibration", cookie / "test", "--threshold-for", "f1")
    assert result.returncode == 0, result.stderr
    meta = written(tmp_path / "f1")
    assert meta.threshold.source == "calibration-f1"
    assert meta.threshold.normal_images == 14 and meta.threshold.anomalous_images == 32
    assert 0.0 < meta.threshold.f1 <= 1.0 and 0.0 <= meta.calibration_image_auroc <= 1.0
    assert "caught" in result.stderr and "false rejects" in result.stderr


def test_lite0_offline_cookie_auroc(cookie, tmp_path):
    """inspectd train with the offline Lite0 backbone; AUROC from `inspectd infer` scores."""
    from inspectd.daemon.evaluation.metrics import auroc as image_auroc

    result = run_cli("train", cookie, "--out", tmp_path / "run", "--backbone", "tf_efficientnet_lite0", "--weights", "offline")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model.ckpt").is_file()
    assert "self-test at f32: passed" in result.stderr
    meta = written(tmp_path / "run" / "model")
    assert_precisions_recorded_only_where_they_ran(meta)
    assert_self_test_holds_real_frames(tmp_path / "run" / "model", meta)
    images = sorted((cookie / "test").glob("*/*.jpg"))
    records = infer_json(tmp_path / "run" / "model", images)
    scores = np.array([r["score"] for r in records])
    labels = np.array([p.parent.name != "good" for p in images])
    auroc = image_auroc(scores, labels)
    print(f"lite0 offline cookie image AUROC {auroc:.4f}")
    assert auroc >= 0.95


def test_mobilenetv2_offline_weights_load_strictly():
    import timm

    from inspectd.export.weights import load_into, offline_state_dict

    features = timm.create_model("mobilenetv2_100", pretrained=False, features_only=True, exportable=True)
    before = features.state_dict()["conv_stem.weight"].clone()
    load_into(features, offline_state_dict("mobilenetv2_100"), "mobilenetv2 offline")
    assert not np.allclose(before.numpy(), features.state_dict()["conv_stem.weight"].numpy())


@pytest.mark.parametrize("problem", ["missing", "truncated", "other_model", "not_a_checkpoint"])
def test_bad_checkpoints(problem, cookie_checkpoint, tmp_path):
    import torch

    checkpoint = tmp_path / "model.ckpt"
    if problem == "truncated":
        checkpoint.write_bytes(cookie_checkpoint.read_bytes()[:100_000])
    elif problem == "other_model":
        from anomalib.models import Patchcore

        other = Patchcore(backbone="resnet18", layers=["layer2", "layer3"], pre_trained=False)
        torch.save({"state_dict": other.state_dict(), "hyper_parameters": {"backbone": "resnet18", "layers": ["layer2", "layer3"]}}, checkpoint)
    elif problem == "not_a_checkpoint":
        checkpoint.write_text("hello")
    result = run_cli("export", checkpoint, "--out", tmp_path / "out", "--calibration", tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("inspectd: ")]  # progress lines say "inspectd export: "
    assert len(lines) == 1 and str(checkpoint) in lines[0] and "Traceback" not in result.stderr, result.stderr
    expected = {"missing": "not found", "truncated": "not a readable", "other_model": "not a PaDiM", "not_a_checkpoint": "not a readable"}
    assert expected[problem] in lines[0]
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_failed_verification_leaves_nothing(cookie_checkpoint, cookie, tmp_path):
    """Nothing half-written in --out: a verification that fails removes the partial folder.

    With no score error allowed at all, the FP16 statistics alone fail it.
    """
    from inspectd.daemon.errors import InspectdError
    from inspectd.export.exporter import export_checkpoint

    with pytest.raises(InspectdError, match="verification failed"):
        export_checkpoint(cookie_checkpoint, tmp_path / "out", calibration_dir=cookie / "test" / "good", max_score_error=0.0)
    assert list(tmp_path.iterdir()) == []


def test_train_rejects_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("train", tmp_path / "empty", "--out", tmp_path / "out", "--weights", "random", "--backbone", "resnet18")
    assert result.returncode == 2
    assert "holds 0 images" in result.stderr and str(tmp_path / "empty") in result.stderr
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == [tmp_path / "empty"]


def test_train_on_a_plain_folder_of_good_images(tmp_path):
    """No defects, no MVTec layout: every 4th image is held out to report on; the others fit the model and set the threshold."""
    from inspectd.daemon.demo.scene import generate_station_dataset

    data = generate_station_dataset(tmp_path / "station", n_train=20, n_test_good=0, n_test_per_size=0)
    result = run_cli("train", data / "train" / "good", "--out", tmp_path / "run", "--backbone", "resnet18", "--weights", "random", "--image-size", "64")
    assert result.returncode == 0, result.stderr[-2000:]
    own = [line for line in result.stderr.splitlines() if line.startswith("inspectd")]
    assert own and not any(".partial" in line for line in own)  # progress names the real output folder
    assert "hidden files" not in result.stderr
    meta = written(tmp_path / "run" / "model")
    # 15 images fit the model and, cross-fitted, set the threshold; every 4th (5) reports and is verified on
    assert meta.threshold.source == "calibration-frr" and meta.threshold.normal_images == 15
    assert meta.images.threshold_cross_fitted and len(meta.images.fit) == 15 and meta.images.threshold == meta.images.fit
    assert meta.normal_scores.count == 5 and meta.verification.passed and meta.verification.frames == 5
    assert "15 good images are too few for a distribution-free bound" in result.stderr  # a warning, not a silent 1%
    assert "on 5 images used for neither fitting nor the threshold" in result.stderr
    noise = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("inspectd")]
    assert not noise, noise[:5]  # the libraries' own chatter is silenced
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model", "model.ckpt"]
