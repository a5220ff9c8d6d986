"""Colour or monochrome end to end (integration tier): a grayscale copy of the cookie set (single-channel PNGs, MVTec
layout with its masks) trained with `inspectd train` at 128 px and exported from a cached plain anomalib checkpoint;
parity and AUROC measured as on colour sets; infer, evaluate and the station take gray frames for the gray folder and
refuse colour ones, and a colour folder refuses gray ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from conftest import needs_export, run_cli, train_plain_anomalib
from inspectd.daemon.schema import read_model_folder
from inspectd.daemon.station.config import load
from inspectd.daemon.station.loop import Station
from inspectd.daemon.station.outputs.memory import MemoryOutput

pytestmark = needs_export


@pytest.fixture(scope="module")
def gray_cookie(cookie: Path, tmp_path_factory) -> Path:
    """../shared/data/cookie in gray: every picture cv2.cvtColor'ed and saved as a single-channel PNG; masks as they are."""
    out = tmp_path_factory.mktemp("gray") / "cookie_gray"
    for path in sorted(p for p in cookie.rglob("*") if p.is_file()):
        target = out / path.relative_to(cookie)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.relative_to(cookie).parts[0] == "ground_truth":
            shutil.copyfile(path, target)
        else:
            cv2.imwrite(str(target.with_suffix(".png")), cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY))
    assert cv2.imread(str(out / "train" / "good" / "000.png"), cv2.IMREAD_UNCHANGED).ndim == 2
    return out


@pytest.fixture(scope="module")
def gray_model(gray_cookie: Path, tmp_path_factory) -> Path:
    """`inspectd train` on the gray set: Lite0 (offline weights) at 128 px, about a minute."""
    out = tmp_path_factory.mktemp("gray_train") / "run"
    # A loose operating point (10% of good parts rejected): the colour tests below need defective images it rejects.
    result = run_cli("train", gray_cookie, "--out", out, "--image-size", "128", "--false-reject-rate", "0.1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "are grayscale" in result.stderr
    return out / "model"


def test_train_on_a_gray_set_records_gray_and_verifies(gray_model):
    meta = read_model_folder(gray_model).metadata
    assert meta.input.color == "gray"
    assert json.loads((gray_model / "inspectd.json").read_text())["input"]["color"] == "gray"
    check = meta.verification
    print(f"\ngray cookie, inspectd train 128 px: verification on {check.frames} frames: max |Δscore| {check.max_abs_score_delta:.5f} "
          f"({check.max_relative_score_error * 100:.4f}% of the threshold), {check.verdict_flips} flips, "
          f"calibration image AUROC {meta.calibration_image_auroc:.4f}")
    assert check.passed and check.verdict_flips == 0 and check.max_relative_score_error < 0.01


def test_evaluate_measures_the_gray_folder_on_the_gray_set(gray_model, gray_cookie):
    result = run_cli("evaluate", gray_model, gray_cookie, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    print(f"\ngray cookie: evaluate image AUROC {figures['image_auroc']:.4f}, pixel AUROC {figures['pixel_auroc']:.4f}, "
          f"AUPRO {figures['aupro']:.4f} on {figures['images']} images")
    assert figures["images"] == 46 and figures["pixel_images"] == 46
    assert figures["image_auroc"] >= 0.9  # measured 0.991 (the colour set at the same settings: 0.996)


def test_export_of_a_plain_anomalib_checkpoint_reads_gray_from_the_calibration_images(gray_cookie, tmp_path):
    from inspectd.export.exporter import export_checkpoint

    checkpoint = train_plain_anomalib(gray_cookie, tmp_path / "ckpt", ["test/cracked"])  # cached across runs
    meta = export_checkpoint(checkpoint, tmp_path / "model", calibration_dir=gray_cookie / "test")
    check = meta.verification
    print(f"\ngray cookie, plain anomalib resnet18 256 px exported: max |Δscore| {check.max_relative_score_error * 100:.4f}% of the "
          f"threshold, {check.verdict_flips} flips")
    assert meta.input.color == "gray" and check.verdict_flips == 0 and check.max_relative_score_error < 0.01
    refused = run_cli("export", checkpoint, "--out", tmp_path / "again", "--calibration", gray_cookie / "test", "--color", "rgb")
    assert refused.returncode != 0 and not (tmp_path / "again").exists()
    assert refused.stderr.strip().splitlines()[-1] == (  # after the progress lines
        f"inspectd: --color rgb: the calibration images in {gray_cookie / 'test'} are grayscale; pass the images the model was "
        "trained on, or --color gray")


def scored(model: Path, folder: Path) -> list[dict]:
    result = run_cli("infer", model, *sorted(folder.glob("*.png")), "--json")
    return sorted((json.loads(line) for line in result.stdout.splitlines()), key=lambda record: record["score"])


def rejected_crack(model: Path, gray_cookie: Path) -> Path:
    """The cracked cookie this folder scores highest, which it must reject (what the colour tests feed as a defect)."""
    worst = scored(model, gray_cookie / "test" / "cracked")[-1]
    assert worst["verdict"] == "REJECT", worst
    return Path(worst["image"])


def passed_good(model: Path, gray_cookie: Path) -> Path:
    best = scored(model, gray_cookie / "test" / "good")[0]
    assert best["verdict"] == "PASS", best
    return Path(best["image"])


def test_infer_takes_gray_and_equal_channel_files_and_refuses_colour(gray_model, gray_cookie, cookie, tmp_path):
    gray = rejected_crack(gray_model, gray_cookie)
    equal = tmp_path / "equal.png"
    cv2.imwrite(str(equal), cv2.cvtColor(cv2.imread(str(gray), cv2.IMREAD_UNCHANGED), cv2.COLOR_GRAY2BGR))
    colour = cookie / "test" / "cracked" / "000.jpg"
    result = run_cli("infer", gray_model, gray, equal, colour, "--json")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["verdict"] == "REJECT" and records[0]["score"] == records[1]["score"]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"inspectd: {colour}: is a colour frame but the model folder was trained on "
                                                     "grayscale images"), result.stderr


def test_a_colour_folder_refuses_gray_files_naming_the_fix(cookie_model, gray_cookie):
    gray = gray_cookie / "test" / "good" / "000.png"
    result = run_cli("infer", cookie_model, gray)
    assert result.returncode == 1 and not result.stdout
    assert result.stderr.strip().splitlines() == [
        f"inspectd: {gray}: is a grayscale frame but the model folder was trained on colour images (input.color \"rgb\"); use the "
        "camera's colour output, or retrain with the grayscale images ('inspectd train' on a gray set records input.color \"gray\")"]


def test_the_station_inspects_gray_frames_and_faults_a_colour_one(gray_model, gray_cookie, cookie, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.png").symlink_to(passed_good(gray_model, gray_cookie))
    cv2.imwrite(str(folder / "b.png"), cv2.cvtColor(cv2.imread(str(rejected_crack(gray_model, gray_cookie)), cv2.IMREAD_UNCHANGED),
                                                   cv2.COLOR_GRAY2BGR))
    (folder / "c.jpg").symlink_to(cookie / "test" / "good" / "001.jpg")
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{gray_model}"\n[source]\nkind = "directory"\npath = "{folder}"\n'
                      f'[archive]\npath = "{tmp_path / "archive"}"\npass_sample_every = 1\n')
    memory = MemoryOutput()
    assert Station(load(config), extra_outputs=[memory]).run() == 0
    assert [(v.source, v.rejected) for v in memory.verdicts] == [("a.png", False), ("b.png", True)]
    faults = [message for kind, message, _ in memory.events if kind == "fault"]
    assert len(faults) == 1 and "c.jpg: is a colour frame but the model folder was trained on grayscale images" in faults[0]
    frames = sorted(p.name for p in (tmp_path / "archive").rglob("*.png"))
    heatmaps = sorted(p.name for p in (tmp_path / "archive").rglob("*-heatmap.jpg"))
    assert len(frames) == 2 and len(heatmaps) == 2, (frames, heatmaps)  # each frame (lossless PNG) and its heatmap picture
    single = next((tmp_path / "archive").rglob("*-00000001-pass.png"))  # a.png, one channel: archived as it came
    assert cv2.imread(str(single), cv2.IMREAD_UNCHANGED).ndim == 2


def test_train_refuses_a_mixed_set_naming_a_file_of_each_kind(gray_cookie, cookie, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(gray_cookie / "train", mixed / "train")
    shutil.copytree(gray_cookie / "test" / "good", mixed / "test" / "good")
    shutil.copyfile(cookie / "train" / "good" / "030.jpg", mixed / "train" / "good" / "030.jpg")
    result = run_cli("train", mixed, "--out", tmp_path / "out", "--image-size", "128")
    assert result.returncode != 0 and not (tmp_path / "out").exists()
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (f"inspectd: the images in {mixed} mix grayscale and colour pictures: {mixed / 'train' / 'good' / '000.png'} is "
                         f"grayscale, {mixed / 'train' / 'good' / '030.jpg'} is colour; train on one camera's pictures: convert the set "
                         "to one mode, or remove the odd ones"), result.stderr
