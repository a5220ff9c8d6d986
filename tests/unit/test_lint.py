"""The linter the code's noqa markers refer to (ruff, configured in pyproject.toml), over everything the project writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

RUFF = Path(sys.executable).with_name("ruff")


def test_ruff_finds_nothing():
    result = subprocess.run([str(RUFF), "check", "daemon", "export", "tests", "bench"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]


def test_ruff_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\ntry:\n    pass\nexcept Exception:\n    pass\n")
    result = subprocess.run([str(RUFF), "check", "--config", str(ROOT / "pyproject.toml"), str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "F401" in result.stdout and "BLE001" in result.stdout
