"""inspectd evaluate: a deployed folder measured on labelled images, through the runtime."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_MODEL, needs_export, run_cli
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.evaluation.metrics import auroc


@pytest.fixture(scope="module")
def mugs(tmp_path_factory) -> Path:
    return generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=8, n_test_per_size=3)


def test_demo_model_on_the_demo_station(mugs, tmp_path):
    result = run_cli("evaluate", DEMO_MODEL, mugs, "--json", "--report", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["images"] == 17 and summary["good"] == 8 and summary["defective"] == 9
    infer = run_cli("infer", DEMO_MODEL, *sorted((mugs / "test").glob("*/*.png")), "--json")
    records = [json.loads(line) for line in infer.stdout.splitlines()]
    scores = np.array([r["score"] for r in records])
    labels = np.array(["/good/" not in r["image"] for r in records])
    assert summary["image_auroc"] == pytest.approx(auroc(scores, labels), abs=1e-9)
    counts = summary["confusion"]
    assert counts["true_reject"] + counts["false_accept"] == 9 and counts["false_reject"] + counts["true_pass"] == 8
    assert counts["true_reject"] == sum(r["anomalous"] for r in records if "/good/" not in r["image"])
    assert 0.5 < summary["pixel_auroc"] <= 1.0 and 0.0 < summary["aupro"] <= 1.0 and summary["pixel_images"] == 17
    assert set(summary["per_defect"]) == {"stain_small", "stain_medium", "stain_large"}
    low, high = summary["catch_rate"]["ci95"]
    assert low <= summary["catch_rate"]["rate"] <= high
    page = (tmp_path / "report" / "index.html").read_text()
    assert "histogram.png" in page and (tmp_path / "report" / "histogram.png").stat().st_size > 1000


def test_text_output_and_a_bad_data_folder(mugs, tmp_path):
    result = run_cli("evaluate", DEMO_MODEL, mugs)
    assert result.returncode == 0
    assert "image AUROC" in result.stdout and "false rejects" in result.stdout and "stain_small" in result.stdout
    (tmp_path / "nogood" / "scratch").mkdir(parents=True)
    bad = run_cli("evaluate", DEMO_MODEL, tmp_path / "nogood")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "good/" in bad.stderr and str(tmp_path / "nogood") in bad.stderr


@needs_export
def test_cookie_with_masks_matches_anomalib_pixel_metrics(cookie_model, cookie):
    """The real cookie set (32 masks): our pixel AUROC and AUPRO against anomalib's own metric classes on the same maps."""
    import torch
    from anomalib.metrics.aupro import _AUPRO
    from torchmetrics.classification import BinaryAUROC

    from inspectd.daemon.evaluation.dataset import labelled_images
    from inspectd.daemon.evaluation.measure import score_all, summarise
    from inspectd.daemon.runtime.model import Model

    model = Model.load(cookie_model)
    scored, errors = score_all(model, labelled_images(cookie))
    assert not errors and len(scored) == 46
    summary = summarise(scored, model.rule())
    maps = np.stack([s.model_map for s in scored])
    masks = np.stack([s.model_mask for s in scored])
    assert masks[[s.sample.anomalous for s in scored]].any(axis=(1, 2)).all()  # every cracked cookie has its mask
    reference = _AUPRO(fpr_limit=0.3)
    reference.update(torch.tensor(maps), torch.tensor(masks).float())
    assert summary["aupro"] == pytest.approx(reference.compute().item(), abs=1e-6)
    scaled = (maps - maps.min()) / (maps.max() - maps.min())  # torchmetrics reads scores outside [0, 1] as logits
    pixels = BinaryAUROC()(torch.tensor(scaled).flatten(), torch.tensor(masks).flatten().int()).item()
    assert summary["pixel_auroc"] == pytest.approx(pixels, abs=1e-6)
    print(f"cookie resnet18 (random weights): image AUROC {summary['image_auroc']:.4f}, pixel AUROC {summary['pixel_auroc']:.4f}, "
          f"AUPRO {summary['aupro']:.4f}")


def test_calibrate_refuses_what_the_sample_cannot_show_and_writes_what_it_can(mugs, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder)
    before = (folder / "inspectd.json").read_text()
    refused = run_cli("calibrate", folder, mugs)  # 8 good images cannot bound 1% without assuming a distribution
    assert refused.returncode == 2 and "cannot bound a false-reject rate of 1.00% at 90% confidence" in refused.stderr
    assert (folder / "inspectd.json").read_text() == before
    dry = run_cli("calibrate", folder, mugs, "--max-false-reject-rate", "0.3", "--dry-run")  # 7 images are enough for 30% at 90%
    assert dry.returncode == 0 and (folder / "inspectd.json").read_text() == before
    done = run_cli("calibrate", folder, mugs, "--max-false-reject-rate", "0.3", "--min-defect-area")
    assert done.returncode == 0, done.stderr
    in_sample = int(re.search(r"in-sample: (\d+) of the 8 ", done.stdout).group(1))
    assert "on the line: " in done.stdout and "min_defect_area" in done.stdout
    meta = json.loads((folder / "inspectd.json").read_text())
    assert meta["threshold"]["source"] == "calibration-frr" and meta["threshold"]["method"] in ("gumbel-fit", "order-statistic")
    evaluated = json.loads(run_cli("evaluate", folder, mugs, "--json").stdout)
    assert evaluated["threshold"] == pytest.approx(meta["threshold"]["value"])
    assert evaluated["confusion"]["false_reject"] == in_sample  # what calibrate counted, measured by evaluate through the runtime
    f1 = run_cli("calibrate", folder, mugs, "--target", "f1")
    assert f1.returncode == 0 and json.loads((folder / "inspectd.json").read_text())["threshold"]["source"] == "calibration-f1"
