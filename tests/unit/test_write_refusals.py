"""Issue 17, class 7: every command that writes (or reads what it must) says so in one line when it cannot.

infer (--heatmap-dir where no file can go, model files that cannot be read), collect (--out where no file can go,
odd names among the images already there), calibrate (a rate no threshold can give; its other refusals are main's
tests/integration/test_operating_faults.py), report (records without a score, NaN, text where numbers belong) and
check/run (a device OpenVINO does not have): one line naming the file or option, a non-zero status, no traceback.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DEMO_MODEL, cli, problem_lines
from inspectd.daemon.cli.report import summarise, text
from inspectd.daemon.records import MESSAGE_IDS, RecordKind


def one_line(done, code: int | tuple[int, ...] = 2) -> str:
    codes = code if isinstance(code, tuple) else (code,)
    lines = problem_lines(done.stderr)
    assert done.returncode in codes and len(lines) == 1 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    assert lines[0].startswith("inspectd: ")
    return lines[0]


@pytest.fixture()
def part(tmp_path) -> Path:
    path = tmp_path / "part.png"
    cv2.imwrite(str(path), np.full((60, 80, 3), 100, np.uint8))
    return path


def nowhere(tmp_path: Path) -> dict[str, Path]:
    """Places no file can be written: the kernel's folders, a file, a folder inside a file."""
    (tmp_path / "a-file").write_text("x")
    return {"/proc": Path("/proc"), "/proc/x": Path("/proc/inspectd-x"), "a file": tmp_path / "a-file",
            "inside a file": tmp_path / "a-file" / "sub", "/sys/kernel": Path("/sys/kernel")}


@pytest.mark.parametrize("where", ["/proc", "/proc/x", "a file", "inside a file", "/sys/kernel"])
def test_infer_heatmap_dir_where_nothing_can_be_written(tmp_path, part, where):
    target = nowhere(tmp_path)[where]
    line = one_line(cli("infer", DEMO_MODEL, part, "--heatmap-dir", target))
    assert line.startswith(f"inspectd: {target}: key --heatmap-dir: "), line


@pytest.mark.parametrize("where", ["/proc", "/proc/x", "a file", "inside a file", "/sys/kernel"])
def test_collect_out_where_nothing_can_be_written(tmp_path, part, where):
    target = nowhere(tmp_path)[where]
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{part.parent}"\nmode = "once"\n')
    line = one_line(cli("collect", "--config", config, "--out", target, "--count", "1"))
    assert "key --out: " in line and str(target) in line, line


def labelled(tmp_path: Path, good: list[np.ndarray | bytes], defect: list[np.ndarray | bytes]) -> Path:
    """A small good/ + defect folder set: each item an image, or bytes written as they are (a corrupt file)."""
    data = tmp_path / "labelled"
    for kind, items in (("good", good), ("stain", defect)):
        (data / kind).mkdir(parents=True)
        for number, item in enumerate(items):
            path = data / kind / f"{number:03d}.png"
            path.write_bytes(item) if isinstance(item, bytes) else cv2.imwrite(str(path), item)
    return data


def model_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    for each in DEMO_MODEL.iterdir():
        (folder / each.name).write_bytes(each.read_bytes())
    return folder


def frames(count: int, value: int = 100, channels: int = 3) -> list[np.ndarray]:
    shape = (60, 80, channels) if channels > 1 else (60, 80)
    return [np.full(shape, value + number, np.uint8) for number in range(count)]


@pytest.mark.parametrize("rate", ["1e-300", "1e-17", "0", "1", "-0.5", "nan", "inf"])
def test_calibrate_with_a_rate_no_threshold_can_give(tmp_path, rate):
    folder = model_copy(tmp_path)
    before = (folder / "inspectd.json").read_bytes()
    data = labelled(tmp_path, frames(3), frames(1, 200))
    line = one_line(cli("calibrate", folder, data, "--no-config", "--max-false-reject-rate", rate))
    assert "--max-false-reject-rate" in line, line
    assert (folder / "inspectd.json").read_bytes() == before


@pytest.mark.parametrize("where", ["/proc", "/proc/x", "a file", "inside a file"])
@pytest.mark.parametrize("command", [("demo-data",), ("demo", "--data")])
def test_demo_data_where_nothing_can_be_written(tmp_path, where, command):
    target = nowhere(tmp_path)[where]
    line = one_line(cli(*command, target))
    assert line.startswith(f"inspectd: {target}: key ") and "Traceback" not in line, line


def test_collect_numbers_after_ascii_numbers_whatever_else_is_named_there(tmp_path, part):
    out = tmp_path / "dataset"
    good = out / "train" / "good"
    good.mkdir(parents=True)
    frame = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    for name in ("007.png", "²³.png", "٣٤.png", "café.png", "١.png", "8x.png", "-3.png"):
        (good / name).write_bytes(frame)
    (good / os.fsdecode(b"\xff\xfe.png")).write_bytes(frame)  # not UTF-8
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{part.parent}"\nmode = "once"\n')
    done = cli("collect", "--config", config, "--out", out, "--count", "1")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert (good / "008.png").is_file()


@pytest.mark.parametrize("name", ["inspectd.json", "model.xml", "model.bin", "selftest.npz"])
@pytest.mark.parametrize("what", ["a folder", "a FIFO", "a dangling symlink", "a symlink loop"])
def test_infer_on_model_files_that_cannot_be_read(tmp_path, part, name, what):
    folder = tmp_path / "model"
    folder.mkdir()
    for each in ("inspectd.json", "model.xml", "model.bin", "selftest.npz"):
        if each != name:
            (folder / each).symlink_to(DEMO_MODEL / each)
    target = folder / name
    {"a folder": target.mkdir, "a FIFO": lambda: os.mkfifo(target), "a dangling symlink": lambda: target.symlink_to(tmp_path / "gone"),
     "a symlink loop": lambda: target.symlink_to(target)}[what]()
    line = one_line(cli("infer", folder, part))
    assert str(target) in line, line


@pytest.mark.parametrize("device", ["FOO", "GPU", "NPU", "", "cpu", "AUTO:FOO"])
def test_check_and_run_with_a_device_openvino_does_not_have(tmp_path, part, device):
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\ndevice = "{device}"\n[source]\nkind = "directory"\npath = "{part.parent}"\n'
                      'mode = "once"\n[journal]\nenabled = false\n[archive]\nenabled = false\n')
    lines = [one_line(cli(command, "--config", config, *extra), 78) for command, *extra in (("check",), ("run", "--frames", "1"))]
    assert lines[0] == lines[1] and "key model.device: " in lines[0], lines


# ---------------------------------------------------------------- report over any records

TEXTS = st.one_of(st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "12.5", "-3", "0", "7", "1.5", "x", " 3 ", "1_0"]),
                  st.text(max_size=8), st.binary(max_size=6), st.floats(allow_nan=True), st.integers(-10**20, 10**20))
FIELDS = ["INSPECTD_VERDICT", "INSPECTD_SCORE", "INSPECTD_THRESHOLD", "INSPECTD_FRAME", "INSPECTD_LATENCY_MS", "INSPECTD_MODEL",
          "INSPECTD_SOURCE", "INSPECTD_DEFECT_AREA", "INSPECTD_FAULT", "MESSAGE"]


@st.composite
def records(draw) -> dict:
    record: dict = {"__REALTIME_TIMESTAMP": datetime(2026, 11, 29, 6) + timedelta(seconds=draw(st.integers(0, 8 * 3600)))}
    kind = draw(st.sampled_from([RecordKind.VERDICT, RecordKind.FAULT, RecordKind.DRIFT, RecordKind.START, None]))
    if kind is not None:
        record["MESSAGE_ID"] = MESSAGE_IDS[kind]
    good = {"INSPECTD_VERDICT": draw(st.sampled_from(["PASS", "REJECT"])), "INSPECTD_SCORE": "12.5", "INSPECTD_THRESHOLD": "14.0",
            "INSPECTD_FRAME": "3", "INSPECTD_LATENCY_MS": "20.1", "INSPECTD_MODEL": "a" * 64, "INSPECTD_SOURCE": "part.png"}
    for name in FIELDS:
        choice = draw(st.sampled_from(["good", "absent", "other"]))
        if choice == "good" and name in good:
            record[name] = good[name]
        elif choice == "other":
            record[name] = draw(TEXTS)
    return record


def finite_everywhere(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_everywhere(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(finite_everywhere(v) for v in value)
    return True


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(records(), max_size=12))
def test_report_over_any_records_counts_or_names_each_and_is_never_nan(batch):
    summary = summarise(batch, normal=None, every_s=3600)
    verdictish = [r for r in batch if r.get("MESSAGE_ID") == MESSAGE_IDS[RecordKind.VERDICT] or "INSPECTD_VERDICT" in r]
    assert summary["frames"] + len(summary["malformed_records"]) == len(verdictish)
    assert finite_everywhere(summary), summary
    figures = [line for line in text(summary, None, None) if not line.startswith(("drift alarms", "verdict records not counted",
                                                                                  "faults:"))]  # texts from the records
    assert not any(word in ("nan", "inf", "-inf") for line in figures for word in line.lower().replace(",", " ").split()), figures
