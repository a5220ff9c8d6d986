"""evaluate and calibrate say in one line when they cannot do what was asked, and a calibrate that fails changes nothing
(issue 17 class 7 for these two commands; issue 18 item 5): a catalogue of the cases, each able to fail against the
code before it (tracebacks, a rewritten inspectd.json, a leftover .inspectd.json.tmp, NaN in --json)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL, cli
from inspectd.daemon.demo.scene import generate_station_dataset


@pytest.fixture(scope="module")
def mugs(tmp_path_factory) -> Path:
    return generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=12, n_test_per_size=2)


@pytest.fixture
def model(tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder)
    return folder


def one_line(result) -> str:
    """The command failed with exactly one error line and no traceback; that line."""
    notes = ("failed its self-test on this device",)  # a precision fallback is said, not an error
    errors = [line for line in result.stderr.splitlines() if line.startswith("inspectd: ") and not any(n in line for n in notes)]
    assert result.returncode != 0 and "Traceback" not in result.stderr and len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def labelled(tmp_path: Path, good: list[np.ndarray], defective: list[np.ndarray] = ()) -> Path:
    data = tmp_path / "data"
    for kind, frames in (("good", good), ("stain", defective)):
        (data / kind).mkdir(parents=True, exist_ok=True)
        for number, frame in enumerate(frames):
            cv2.imwrite(str(data / kind / f"{number:03d}.png"), frame)
    return data


def unchanged(model: Path) -> bool:
    return (model / "inspectd.json").read_bytes() == (DEMO_MODEL / "inspectd.json").read_bytes() and not list(model.glob(".inspectd.json.tmp"))


@pytest.mark.parametrize("command", ["evaluate", "calibrate"])
def test_an_all_gray_set_on_a_colour_model(command, model, tmp_path):
    gray = [np.full((360, 480), 90 + i, np.uint8) + np.random.default_rng(i).integers(0, 9, (360, 480), dtype=np.uint8) for i in range(6)]
    line = one_line(cli(command, model, labelled(tmp_path, gray, gray[:2]), "--no-config"))
    assert "none of the 8 images could be scored" in line and "grayscale" in line
    assert unchanged(model)


def test_calibrate_on_all_corrupt_good_images_changes_nothing(model, mugs, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(mugs / "test", data)
    for path in (data / "good").glob("*.png"):
        path.write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    line = one_line(cli("calibrate", model, data, "--no-config", "--max-false-reject-rate", "0.3"))
    assert "12 of 18 images could not be scored" in line and "not a readable image" in line and "nothing was written" in line
    assert unchanged(model)


def test_calibrate_with_some_unreadable_images_changes_nothing(model, mugs, tmp_path):
    """It once rewrote inspectd.json from 2 of 28 images and exited 1."""
    data = tmp_path / "data"
    shutil.copytree(mugs / "test", data)
    (data / "good" / "000.png").write_bytes(b"broken")
    result = cli("calibrate", model, data, "--no-config", "--max-false-reject-rate", "0.3", "--accept-estimate")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "1 of 18 images could not be scored" in result.stderr and "nothing was written" in result.stderr
    assert unchanged(model)


def test_calibrate_on_good_images_that_all_score_the_same(model, tmp_path):
    blank = [np.full((360, 480, 3), 128, np.uint8)] * 8
    line = one_line(cli("calibrate", model, labelled(tmp_path, blank), "--no-config", "--max-false-reject-rate", "0.3"))
    assert "all 8 good images score" in line and "the same picture" in line
    assert unchanged(model)


@pytest.mark.parametrize("rate", ["1e-300", "0", "1", "-0.5"])
def test_calibrate_refuses_a_rate_no_images_can_show(rate, model, mugs):
    line = one_line(cli("calibrate", model, mugs, "--no-config", "--max-false-reject-rate", rate))
    assert "--max-false-reject-rate" in line and "between 1e-06 and 1" in line
    assert unchanged(model)


def test_calibrate_into_a_folder_it_cannot_write_changes_nothing(model, mugs):
    """A read-only folder and a full disk both fail at the temporary file: here a directory sits where it would go."""
    (model / ".inspectd.json.tmp").mkdir()
    line = one_line(cli("calibrate", model, mugs, "--no-config", "--max-false-reject-rate", "0.3", "--accept-estimate"))
    assert "inspectd.json: cannot be written" in line and "is unchanged" in line
    assert (model / "inspectd.json").read_bytes() == (DEMO_MODEL / "inspectd.json").read_bytes()


def test_calibrate_on_a_full_disk_leaves_no_temporary(model, mugs):
    """The disk fills while the new inspectd.json is written (a file-size limit makes the write fail half-way, as
    ENOSPC does): one line, the old file, no .inspectd.json.tmp."""
    size = (model / "inspectd.json").stat().st_size

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    result = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "calibrate", str(model), str(mugs), "--no-config",
                             "--max-false-reject-rate", "0.3", "--accept-estimate"], capture_output=True, text=True, preexec_fn=limited)
    line = one_line(result)
    assert "cannot be written" in line and "is unchanged" in line
    assert unchanged(model)


@pytest.mark.parametrize("where", ["proc", "file"])
def test_evaluate_report_where_it_cannot_go(where, mugs, tmp_path):
    target = Path("/proc/inspectd-report") if where == "proc" else tmp_path / "taken"
    if where == "file":
        target.write_text("a file")
    line = one_line(cli("evaluate", DEMO_MODEL, mugs, "--no-config", "--report", target))
    assert str(target) in line and "--report" in line


def test_evaluate_json_on_good_images_only_is_valid_json_with_nulls(mugs):
    good_only = mugs / "test" / "good"
    result = cli("evaluate", DEMO_MODEL, _good_only(mugs), "--no-config", "--json")
    assert result.returncode == 0, result.stderr

    def refuse(constant):
        raise AssertionError(f"{constant} in --json")

    summary = json.loads(result.stdout, parse_constant=refuse)
    assert summary["catch_rate"] is None and summary["image_auroc"] is None and summary["f1"] is None
    assert summary["false_reject_rate"]["of"] == len(list(good_only.glob("*.png")))


def _good_only(mugs: Path) -> Path:
    folder = mugs.parent / "good_only"
    if not folder.exists():
        shutil.copytree(mugs / "test" / "good", folder / "good")
    return folder


def test_evaluate_a_defect_folder_of_mode_000(mugs):
    """Root reads a folder of mode 000: as root, the command runs without the capabilities that let it (a user's view)."""
    data = Path(tempfile.mkdtemp(prefix="inspectd-mode000-"))
    try:
        data.chmod(0o755)
        shutil.copytree(mugs / "test" / "good", data / "good")
        shutil.copytree(mugs / "test" / "stain_large", data / "stain")
        for path in data.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (data / "stain").chmod(0)
        command = [sys.executable, "-m", "inspectd.daemon.cli", "evaluate", str(DEMO_MODEL), str(data), "--no-config"]
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("root reads a folder of mode 000, and setpriv (util-linux) is absent to drop that")
            command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True)
        line = one_line(result)
        assert str(data / "stain") in line and "cannot be read" in line
    finally:
        (data / "stain").chmod(0o755)
        shutil.rmtree(data)
