"""One decision rule: a labelled folder replayed through the station and measured by ``evaluate --config`` gets the same
verdict for every image, whatever the station's configuration sets ([model] threshold, [decision] pixel_threshold,
min_defect_area, confirm); ``infer --config`` too, and ``calibrate`` chooses on the same rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_MODEL, cli
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.station.config import load
from inspectd.daemon.station.loop import Station
from inspectd.daemon.station.outputs.memory import MemoryOutput


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path]:
    """The demo station's test images as a labelled folder, and the same images flat, named in evaluate's order."""
    data = generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=8, n_test_per_size=3) / "test"
    replay = data.parent / "replay"
    replay.mkdir()
    kinds = ["good"] + sorted(p.name for p in data.iterdir() if p.is_dir() and p.name != "good")
    index = 0
    for kind in kinds:
        for path in sorted((data / kind).glob("*.png")):
            shutil.copyfile(path, replay / f"{index:03d}_{kind}_{path.name}")
            index += 1
    return data, replay


def station_file(folder: Path, replay: Path, model_table: str = "", decision: str = "") -> Path:
    path = folder / "inspectd.toml"
    path.write_text(f'[model]\npath = "{DEMO_MODEL}"\n{model_table}\n[source]\nkind = "directory"\npath = "{replay}"\n'
                    f'[archive]\nenabled = false\n[decision]\n{decision}\n')
    return path


def evaluated(data: Path, *options: object) -> dict:
    result = cli("evaluate", DEMO_MODEL, data, "--json", *options)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def station_verdicts(config: Path) -> list[str]:
    memory = MemoryOutput()
    assert Station(load(config), extra_outputs=[memory]).run() == 0
    return [str(v.verdict) for v in sorted(memory.verdicts, key=lambda v: v.frame)]


def areas(data: Path, tmp_path: Path, replay: Path, decision: str) -> list[int]:
    """The defect areas of the frames above the threshold, as a station configured with ``decision`` counts them."""
    config = station_file(tmp_path, replay, decision=decision + "\nmin_defect_area = 1")
    measured = evaluated(data, "--config", config)
    return sorted(v["defect_area"] for v in measured["verdicts"] if v["score"] > measured["threshold"])


@pytest.mark.parametrize("setting", ["model.threshold", "decision.min_defect_area", "decision.pixel_threshold", "decision.confirm"])
def test_the_station_and_evaluate_give_every_image_the_same_verdict(labelled, tmp_path, setting):
    data, replay = labelled
    own = evaluated(data, "--no-config")
    threshold, scores = own["threshold"], sorted(v["score"] for v in own["verdicts"])
    if setting == "model.threshold":  # between the scores: the override moves verdicts both ways
        model_table, decision = f"threshold = {(scores[len(scores) // 2] + scores[len(scores) // 2 + 1]) / 2:.4f}", ""
    elif setting == "decision.min_defect_area":  # the median area of the frames above the threshold: half of them pass
        model_table, decision = "", f"min_defect_area = {areas(data, tmp_path, replay, '')[len(scores) // 4]}"
    elif setting == "decision.pixel_threshold":
        pixel = f"pixel_threshold = {threshold * 0.6:.4f}"
        model_table, decision = "", f"{pixel}\nmin_defect_area = {areas(data, tmp_path, replay, pixel)[len(scores) // 4]}"
    else:
        model_table, decision = "", "confirm = [2, 3]"
    config = station_file(tmp_path, replay, model_table, decision)
    measured = evaluated(data, "--config", config)
    by_station = station_verdicts(config)
    by_evaluate = [v["verdict"] for v in measured["verdicts"]]
    assert len(by_station) == len(by_evaluate) == len(own["verdicts"])
    assert by_station == by_evaluate
    assert by_evaluate != [v["verdict"] for v in own["verdicts"]], f"{setting} changed no verdict: the test would prove nothing"
    inferred = cli("infer", DEMO_MODEL, *sorted(replay.iterdir()), "--json", "--config", config)
    assert [json.loads(line)["verdict"] for line in inferred.stdout.splitlines()] == by_station
    if setting == "decision.confirm":  # a verdict spans frames: no rate per image, and it says so
        assert measured["false_reject_rate"] is None and measured["catch_rate"] is None and not measured["rates_per_part"]
        text = cli("evaluate", DEMO_MODEL, data, "--config", config).stdout
        assert "rates              none per image" in text and "false rejects" not in text
    else:
        counts = measured["confusion"]
        rejected = [v["verdict"] == "REJECT" for v in measured["verdicts"]]
        defective = [v["kind"] != "good" for v in measured["verdicts"]]
        assert counts["true_reject"] == sum(r and d for r, d in zip(rejected, defective))
        assert counts["false_reject"] == sum(r and not d for r, d in zip(rejected, defective))


def test_the_installed_configuration_is_the_default_only_for_its_own_model_folder(labelled, tmp_path):
    """evaluate's default is the station's configuration; one written for another folder is not applied silently."""
    data, replay = labelled
    copy = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, copy)
    config = station_file(tmp_path, replay, "threshold = 1.0e3")
    measured = cli("evaluate", copy, data, "--json", "--config", config)
    assert measured.returncode == 0 and json.loads(measured.stdout)["threshold"] == 1000.0
    assert f"written for {DEMO_MODEL}" in measured.stderr


def test_calibrate_chooses_on_the_station_rule_and_refuses_to_change_what_the_station_overrides(labelled, tmp_path):
    data, replay = labelled
    copy = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, copy)
    plain = cli("calibrate", copy, data, "--no-config", "--target", "f1", "--dry-run")
    assert plain.returncode == 0, plain.stderr
    area = areas(data, tmp_path, replay, "")[0] + 1  # more than the smallest caught stain has: the rule passes it
    config = station_file(tmp_path, replay, decision=f"min_defect_area = {area}")
    config.write_text(config.read_text().replace(str(DEMO_MODEL), str(copy)))
    with_area = cli("calibrate", copy, data, "--config", config, "--target", "f1")
    assert with_area.returncode == 0, with_area.stderr
    chosen = json.loads((copy / "inspectd.json").read_text())["threshold"]["value"]
    measured = json.loads(cli("evaluate", copy, data, "--json", "--config", config).stdout)
    caught_line = next(line for line in with_area.stdout.splitlines() if line.strip().startswith("caught"))
    assert f"({measured['catch_rate']['count']}/{measured['catch_rate']['of']};" in caught_line  # calibrate's figure is evaluate's
    assert measured["threshold"] == pytest.approx(chosen)
    overridden = station_file(tmp_path, replay, "threshold = 150.0")
    overridden.write_text(overridden.read_text().replace(str(DEMO_MODEL), str(copy)))
    before = (copy / "inspectd.json").read_bytes()
    refused = cli("calibrate", copy, data, "--config", overridden, "--target", "f1")
    assert refused.returncode == 2 and (copy / "inspectd.json").read_bytes() == before
    assert f"inspectd: {overridden}: key model.threshold: sets the threshold the station applies" in refused.stderr
    assert np.isfinite(chosen)
