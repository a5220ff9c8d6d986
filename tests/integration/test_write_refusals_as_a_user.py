"""Issue 17, class 7, with permissions: files of mode 000 and folders that cannot be written, as the service's user
meets them. Tests run as root here, which passes every permission check: the command runs in a child that gave up
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (what makes root pass), so modes apply to it as to any user.
Also evaluate on a defect folder of mode 000, and calibrate on a model folder it cannot write or whose write fails
part-way (a file-size limit standing for a full disk): inspectd.json unchanged, no temporary file left."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL, problem_lines

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def without_dac_override() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_as_a_user(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", *map(str, args)], capture_output=True, text=True, timeout=300,
                          preexec_fn=without_dac_override if os.geteuid() == 0 else None)


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = problem_lines(done.stderr)
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-2000:])
    return lines[0]


@pytest.fixture()
def part(tmp_path) -> Path:
    path = tmp_path / "part.png"
    cv2.imwrite(str(path), np.full((60, 80, 3), 100, np.uint8))
    return path


@pytest.mark.parametrize("name", ["inspectd.json", "model.xml", "model.bin", "selftest.npz", "the folder itself"])
def test_infer_on_model_files_of_mode_000(tmp_path, part, name):
    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder)
    target = folder if name == "the folder itself" else folder / name
    target.chmod(0)
    try:
        line = one_line(run_as_a_user("infer", folder, part))
    finally:
        target.chmod(0o755)
    assert line.startswith(f"inspectd: {target}: ") and "Permission denied" in line, line


@pytest.mark.parametrize("command", ["infer --heatmap-dir", "collect --out"])
def test_an_output_folder_this_user_cannot_write(tmp_path, part, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{part.parent}"\nmode = "once"\n')
    try:
        if command.startswith("infer"):
            done = run_as_a_user("infer", DEMO_MODEL, part, "--heatmap-dir", locked / "heatmaps")
        else:
            done = run_as_a_user("collect", "--config", config, "--out", locked, "--count", "1")
        line = one_line(done)
    finally:
        locked.chmod(0o755)
    assert "Permission denied" in line and command.split()[1] in line, line
    assert list(locked.iterdir()) == []


def refusal(done: subprocess.CompletedProcess) -> str:
    """calibrate's one line (beside its progress lines), a non-zero status, no traceback."""
    lines = [line for line in problem_lines(done.stderr) if line.startswith("inspectd: ")]
    assert done.returncode != 0 and len(lines) == 1 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-2000:])
    return lines[0]


def labelled_set(tmp_path: Path) -> Path:
    data = tmp_path / "labelled"
    for kind, value, count in (("good", 100, 8), ("stain", 200, 2)):
        (data / kind).mkdir(parents=True)
        for number in range(count):
            cv2.imwrite(str(data / kind / f"{number:03d}.png"), np.full((60, 80, 3), value + number, np.uint8))
    return data


def test_evaluate_with_a_defect_folder_of_mode_000(tmp_path):
    """Issue 17: a traceback (PermissionError listing the folder)."""
    data = labelled_set(tmp_path)
    (data / "stain").chmod(0)
    try:
        line = one_line(run_as_a_user("evaluate", DEMO_MODEL, data, "--no-config"))
    finally:
        (data / "stain").chmod(0o755)
    assert line.startswith(f"inspectd: {data / 'stain'}: ") and "Permission denied" in line, line


def test_calibrate_on_a_model_folder_it_cannot_write_changes_nothing(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder)
    before = (folder / "inspectd.json").read_bytes()
    folder.chmod(0o555)
    try:
        line = refusal(run_as_a_user("calibrate", folder, labelled_set(tmp_path), "--no-config", "--accept-estimate"))
    finally:
        folder.chmod(0o755)
    assert str(folder) in line and "Permission denied" in line, line
    assert (folder / "inspectd.json").read_bytes() == before and sorted(os.listdir(folder)) == sorted(os.listdir(DEMO_MODEL))


def test_calibrate_whose_write_fails_halfway_leaves_no_temporary_file(tmp_path):
    """Issue 17: a full disk left an empty .inspectd.json.tmp. A file-size limit on the child (RLIMIT_FSIZE) fails the
    write part-way as a full disk does (EFBIG for ENOSPC; Python ignores SIGXFSZ), without a disk to fill."""
    import resource

    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder)
    before = (folder / "inspectd.json").read_bytes()
    limit = len(before) // 2
    done = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "calibrate", folder, labelled_set(tmp_path), "--no-config",
                           "--accept-estimate"], capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    line = refusal(done)
    assert str(folder) in line and "File too large" in line, line
    assert (folder / "inspectd.json").read_bytes() == before and sorted(os.listdir(folder)) == sorted(os.listdir(DEMO_MODEL))
