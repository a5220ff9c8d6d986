"""The architecture contracts in pyproject.toml ([tool.importlinter]), checked with import-linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(config), "--no-cache"], capture_output=True, text=True, cwd=ROOT)


def test_rooms_import_only_the_rooms_below_them_and_never_torch():
    result = lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "BROKEN" not in result.stdout and result.stdout.count(" KEPT") >= 3


def test_the_contracts_can_fail(tmp_path):
    """The same checker with the layers upside down must report the daemon's real imports as broken."""
    config = (ROOT / "pyproject.toml").read_text()
    start = config.index('layers = [')
    end = config.index("]", start)
    layers = [line.strip().strip('",') for line in config[start:end].splitlines()[1:] if line.strip()]
    upside_down = "layers = [\n" + "".join(f'    "{layer}",\n' for layer in reversed(layers))
    broken = tmp_path / "pyproject.toml"
    broken.write_text(config[:start] + upside_down + config[end:])
    result = lint(broken)
    assert result.returncode != 0 and "BROKEN" in result.stdout
