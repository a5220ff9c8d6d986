"""inspectd collect: frames through the station's own source and ROI into an MVTec-layout folder, with a contact sheet."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from conftest import DEMO_MODEL, SHARED_DATA, cli


def station_config(tmp_path: Path, images: Path, roi: str = "") -> Path:
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{images}"\nmode = "once"\n{roi}')
    return config


def test_collects_through_the_roi_and_continues_numbering(tmp_path):
    cookies = SHARED_DATA / "cookie" / "train" / "good"
    images = sorted(cookies.glob("*.jpg"))
    if not images:
        import pytest

        pytest.skip(f"{cookies} is absent: the real inspection images live in ../shared/data")
    config = station_config(tmp_path, cookies, "roi = [100, 50, 400, 300]\n")
    out = tmp_path / "dataset"
    first = cli("collect", "--config", config, "--out", out, "--count", "5")
    assert first.returncode == 0, first.stderr
    second = cli("collect", "--config", config, "--out", out, "--count", "3", "--label", "crumbs")
    assert second.returncode == 0, second.stderr
    good = sorted((out / "train" / "good").glob("*.png"))
    assert [p.name for p in good] == ["000.png", "001.png", "002.png", "003.png", "004.png"]
    frame = cv2.imread(str(good[0]))
    original = cv2.imread(str(images[0]))
    assert frame.shape == (300, 400, 3) and np.array_equal(frame, original[50:350, 100:500])  # the ROI, lossless
    assert len(list((out / "test" / "crumbs").glob("*.png"))) == 3
    sheet = cv2.imread(str(out / "contact-good.png"))
    assert sheet.shape[1] == 8 * 164 and sheet.shape[0] >= 120
    again = cli("collect", "--config", config, "--out", out, "--count", "2")
    assert sorted(p.name for p in (out / "train" / "good").glob("*.png"))[-2:] == ["005.png", "006.png"]
    assert again.returncode == 0


def test_a_replay_shorter_than_asked_and_bad_labels(tmp_path):
    images = tmp_path / "few"
    images.mkdir()
    for index in range(2):
        cv2.imwrite(str(images / f"{index}.png"), np.full((60, 80, 3), 100 + index, np.uint8))
    config = station_config(tmp_path, images)
    short = cli("collect", "--config", config, "--out", tmp_path / "d", "--count", "5")
    assert short.returncode == 1 and len(list((tmp_path / "d" / "train" / "good").glob("*.png"))) == 2
    bad = cli("collect", "--config", config, "--out", tmp_path / "d", "--count", "1", "--label", "../x")
    assert bad.returncode == 2 and "--label" in bad.stderr and bad.stderr.count("\n") == 1
