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


def layered_modules() -> dict[str, set[str]]:
    """Each layers contract's container and the modules its layers name."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return {container: {name.strip() for layer in contract["layers"] for name in layer.split("|")}
            for contract in contracts if contract["type"] == "layers" for container in contract["containers"]}


def test_every_room_and_every_station_module_is_in_a_layer():
    """A module left out of the contract could import upwards unseen: each must be named in its container's layers."""
    layered = layered_modules()
    for container, folder in (("inspectd.daemon", ROOT / "daemon"), ("inspectd.daemon.station", ROOT / "daemon" / "station")):
        present = {p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__")}
        present |= {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
        present -= {"platform_check"}  # the build backend's first step: the standard library only, checked by its own test
        assert present <= layered[container], f"not in any layer of {container}: {sorted(present - layered[container])}"
