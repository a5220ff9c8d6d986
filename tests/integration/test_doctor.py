"""inspectd doctor: a PASS/WARN/FAIL line per check, each problem with its fix, exit 1 on any FAIL."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from conftest import DEMO_MODEL, run_cli

LINE = re.compile(r"^(PASS|WARN|FAIL)  [a-z0-9 ._-]+: .+")


def lines_of(stdout: str) -> list[str]:
    *checks, summary = stdout.strip().splitlines()
    assert all(LINE.match(line) for line in checks), stdout
    assert re.match(r"\d+ checks: \d+ passed, \d+ warnings, \d+ failed$", summary), summary
    return checks


def test_this_machine_and_the_demo_model(tmp_path):
    result = run_cli("doctor", "--model", DEMO_MODEL, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = lines_of(result.stdout)
    assert any(line.startswith("PASS  platform: 64-bit") for line in checks)
    assert any(line.startswith("PASS  openvino: ") and "natively" in line for line in checks)
    # A precision this CPU really executes may fail (bf16 on AVX-512 BF16); it is said, and auto takes one that passed.
    passed = set()
    for precision in ("bf16", "f16", "f32"):
        line = next(line for line in checks if f"self-test at {precision}:" in line)
        assert line.startswith("PASS") or (line.startswith("WARN") and "falls back to a precision that passes" in line), line
        passed |= {precision} if line.startswith("PASS") else set()
    assert "f32" in passed
    auto = re.search(r"'auto' runs this folder at (\w+)", result.stdout)
    assert auto and auto[1] in passed, result.stdout
    assert not any(line.startswith("FAIL") for line in checks)


def test_a_folder_that_does_not_fit_fails_with_its_fix(tmp_path):
    from inspectd.daemon.schema import sha256_of

    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder)
    path = folder / "selftest.npz"
    with np.load(path) as data:
        arrays = {key: data[key].copy() for key in data.files}
    arrays["reference_scores"] = arrays["reference_scores"] * np.float32(1.5)
    np.savez_compressed(path, **arrays)
    meta = json.loads((folder / "inspectd.json").read_text())
    meta["files"]["selftest.npz"].update(sha256=sha256_of(path), bytes=path.stat().st_size)
    (folder / "inspectd.json").write_text(json.dumps(meta, indent=2) + "\n")
    result = run_cli("doctor", "--model", folder, cwd=tmp_path)
    assert result.returncode == 1
    checks = lines_of(result.stdout)
    f32 = next(line for line in checks if "self-test at f32" in line)
    assert f32.startswith("FAIL") and "does not fit this device" in f32
    assert any(line.startswith("FAIL  precision:") and "every precision" in line for line in checks)


def test_configured_parts_are_checked(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(next(Path(DEMO_MODEL).glob("*.json")), tmp_path / "not-an-image.json")
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{images}"\nmode = "watch"\n'
                      f'[archive]\npath = "{tmp_path / "archive"}"\nmax_mb = 100000000.0\n'
                      f'[gpio]\nchip = "pinctrl-rp1"\n[gpio.reject]\nline = "GPIO17"\n')
    result = run_cli("doctor", "--config", config, cwd=tmp_path)
    checks = lines_of(result.stdout)
    assert result.returncode == 1
    assert any(line.startswith("PASS  configuration: ") for line in checks)
    assert any("self-test at f32" in line for line in checks)  # the configured model folder
    assert any(line.startswith("FAIL  archive space:") and "archive.max_mb" in line for line in checks)
    gpio = [line for line in checks if line.split("  ", 1)[1].startswith(("gpio", "gpio.chip"))]
    assert gpio and any(line.startswith("FAIL") for line in gpio)  # no chip pinctrl-rp1 on this machine


def test_a_bad_configuration_is_one_fail_line(tmp_path):
    config = tmp_path / "inspectd.toml"
    config.write_text("[model]\nthreshold = -1.0\n")
    result = run_cli("doctor", "--config", config, cwd=tmp_path)
    assert result.returncode == 1
    checks = lines_of(result.stdout)
    bad = [line for line in checks if line.startswith("FAIL  configuration:")]
    assert len(bad) == 1 and str(config) in bad[0] and "model.threshold" in bad[0]
