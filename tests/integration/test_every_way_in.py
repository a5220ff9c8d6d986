"""Every way in applies the same rules: what `check` (and so a start) refuses, a reload of a running station refuses
too, keeping the configuration it runs with and judging on; `check` judges the source's first frame with the model as
`run` will (a gray camera on a colour model); a model folder whose crop is larger than its resize is refused."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import cv2
import pytest

from conftest import DEMO_MODEL, cli
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.station.config import load
from inspectd.daemon.station.loop import Station
from inspectd.daemon.station.outputs.memory import MemoryOutput


@pytest.fixture(scope="module")
def mugs(tmp_path_factory) -> Path:
    return generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=4, n_test_per_size=1) / "test" / "good"


def station_text(images: Path, model: Path = DEMO_MODEL, model_keys: str = "", source_keys: str = "") -> str:
    return (f'[model]\npath = "{model}"\n{model_keys}\n[source]\nkind = "directory"\npath = "{images}"\nmode = "loop"\n{source_keys}\n'
            f'[archive]\nenabled = false\n')


def gray_copy(images: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for path in sorted(images.glob("*.png")):
        cv2.imwrite(str(folder / path.name), cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY))
    return folder


BROKEN = {  # what each breaks: refused by check (exit 78) and by a reload alike
    "an ROI outside the frames": lambda images, tmp: station_text(images, source_keys="roi = [0, 0, 5000, 5000]"),
    "a threshold of 1e30": lambda images, tmp: station_text(images, model_keys="threshold = 1e30"),
    "a threshold of 1e-30": lambda images, tmp: station_text(images, model_keys="threshold = 1e-30"),
    "a pixel threshold of 1e30": lambda images, tmp: station_text(images) + "[decision]\npixel_threshold = 1e30\nmin_defect_area = 5\n",
    "gray frames on a colour model": lambda images, tmp: station_text(gray_copy(images, tmp / "gray")),
    "a minimum area larger than a frame": lambda images, tmp: station_text(images) + "[decision]\nmin_defect_area = 100000000\n",
}


@pytest.mark.parametrize("what", list(BROKEN))
def test_check_and_a_reload_refuse_the_same_configuration(mugs, tmp_path, what):
    path = tmp_path / "inspectd.toml"
    path.write_text(BROKEN[what](mugs, tmp_path))
    checked = cli("check", "--config", path)
    assert checked.returncode == 78, (what, checked.stdout, checked.stderr)
    assert checked.stderr.startswith(f"inspectd: {path}: "), checked.stderr
    # the same file sent to a running station by a reload
    running = station_text(mugs)
    path.write_text(running)
    memory = MemoryOutput()
    station = Station(load(path), config_path=path, extra_outputs=[memory])
    result: list = []
    thread = threading.Thread(target=lambda: result.append(station.run()))
    thread.start()
    try:
        assert memory.wait_for(lambda m: len(m.verdicts) >= 2, 120)
        path.write_text(BROKEN[what](mugs, tmp_path / "again"))
        seen = len(memory.events)
        station.request_reload()
        assert memory.wait_for(lambda m: any(e.kind in ("fault", "reload", "stop") for e in m.events[seen:]), 120), what
        answer = next(e for e in memory.events[seen:] if e.kind in ("fault", "reload", "stop"))
        assert answer.kind == "fault" and answer.fields.get("fault") == "reload", (what, answer)
        assert "reload failed, keeping the running configuration and model" in answer.message
        judged = len(memory.verdicts)
        assert memory.wait_for(lambda m: len(m.verdicts) > judged + 2, 120), f"{what}: the station stopped judging"
        assert memory.verdicts[-1].threshold == memory.verdicts[0].threshold  # the running rule, kept
    finally:
        station.request_stop()
        thread.join(timeout=60)
    assert result == [0], result


def test_a_model_folder_whose_crop_is_larger_than_its_resize_is_refused(mugs, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder)
    meta = json.loads((folder / "inspectd.json").read_text())
    meta["preprocess"]["resize"]["size"] = 64  # smaller than the graph's input: no frame could be cropped to it
    meta["preprocess"]["center_crop"] = [meta["input"]["height"], meta["input"]["width"]]
    (folder / "inspectd.json").write_text(json.dumps(meta))
    path = tmp_path / "inspectd.toml"
    path.write_text(station_text(mugs, model=folder))
    checked = cli("check", "--config", path)
    assert checked.returncode == 78
    assert "preprocess.center_crop" in checked.stderr and "is larger than what resize 64 gives" in checked.stderr, checked.stderr
