"""The Pi runtime must never import torch, anomalib or lightning."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import ROOT

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    FORBIDDEN = {"torch", "torchvision", "anomalib", "lightning", "pytorch_lightning", "timm"}

    class Forbid(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ImportError(f"runtime imported {name}")
            return None

    sys.meta_path.insert(0, Forbid())
    """
)


def test_runtime_runs_with_torch_and_anomalib_unimportable(demo_model, tmp_path):
    script = BLOCKER + textwrap.dedent(
        f"""
        import pkgutil, importlib, sys
        import inspectd.daemon
        imported = [importlib.import_module(m.name).__name__ for m in pkgutil.walk_packages(inspectd.daemon.__path__, "inspectd.daemon.") if not m.name.endswith("__main__")]
        print("IMPORTED", len(imported), sorted(imported))
        from inspectd.daemon.demo.scene import generate_station_dataset
        from inspectd.daemon.cli import main
        data = generate_station_dataset({str(tmp_path / "data")!r}, n_train=0, n_test_good=1, n_test_per_size=1)
        images = sorted(str(p) for p in (data / "test").glob("*/*.png"))
        code = main(["infer", {str(demo_model)!r}, *images, "--json", "--heatmap-dir", {str(tmp_path / "heat")!r}])
        demo_code = main(["demo", "--data", {str(tmp_path / "demo")!r}])
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in {{"torch", "anomalib", "lightning"}})
        print("LOADED", loaded)
        sys.exit(code or demo_code)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    # every module of daemon/, sub-packages included, was imported under the guard
    on_disk = {".".join(("inspectd.daemon", *p.relative_to(ROOT / "daemon").with_suffix("").parts)).removesuffix(".__init__")
               for p in (ROOT / "daemon").rglob("*.py") if p.name != "__main__.py"}
    imported = set(eval(result.stdout.split("IMPORTED", 1)[1].split(None, 1)[1].splitlines()[0]))
    assert on_disk - {"inspectd.daemon"} <= imported, sorted(on_disk - imported)
    assert result.stdout.count('"verdict"') == 4  # one good and one stain of each size
    assert len(list((tmp_path / "heat").glob("*.png"))) == 4
    # the README's main job: the daemon replaying the demo station, one verdict line per image
    verdicts = [line for line in result.stderr.splitlines() if line.startswith(("inspectd: PASS", "inspectd: REJECT"))]
    assert len(verdicts) == 28 and "stopped (replayed all 28 images" in result.stderr
    assert sum("REJECT" in line and " stain_" in line for line in verdicts) == 18  # every stained mug rejected
    assert not any("REJECT" in line and "good_" in line for line in verdicts)
    # Every REJECT is archived, or the archive's fault record says frames were not (a loaded machine falls behind):
    # what the station promises, not what a quiet machine happens to do.
    reject_frames = {int(line.split("frame ")[1].split()[0]) for line in verdicts if line.startswith("inspectd: REJECT")}
    archived = {int(path.name.split("-")[2]) for path in (tmp_path / "demo" / "rejects").glob("*-reject.png")}
    assert archived <= reject_frames
    if archived != reject_frames:
        assert any(line.startswith("inspectd: archive:") and "without INSPECTD_IMAGE" in line for line in result.stderr.splitlines()), \
            f"frames {sorted(reject_frames - archived)} were neither archived nor recorded as not archived"


def test_blocker_really_blocks():
    """The guard above must be able to fail: importing torch under it raises."""
    result = subprocess.run([sys.executable, "-c", BLOCKER + "import torch"], capture_output=True, text=True)
    assert result.returncode != 0 and "runtime imported torch" in result.stderr
