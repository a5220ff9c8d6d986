"""`inspectd check` and `inspectd run`: every configuration error at once, the same lines in both, exit 78; check
builds or looks at what run builds without side effects (nothing created, no GPIO line requested, no camera or
stream opened), and says what it did not open.

Most configurations here name a model folder that does not exist: its line is one of the errors, and the test
judges the others (loading the real model costs a second per command).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL
from test_gpio import sim_chip  # noqa: F401  the fixture: a gpio-sim chip, where the kernel has one
from inspectd.daemon.cli import main
from inspectd.daemon.errors import EX_CONFIG, ConfigError, GpioError
from inspectd.daemon.gpio import LineInfo
from inspectd.daemon.gpio.memory import MemoryGpio
from inspectd.daemon.station import devices
from inspectd.daemon.station.config import load
from inspectd.daemon.station.devices import check_gpio
from inspectd.daemon.station.preflight import BYTES_PER_PIXEL, memory_limit
from inspectd.daemon.station.settings import INT_MAX, every


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("000.png", "001.png"):
        cv2.imwrite(str(folder / name), np.full((120, 160, 3), 128, np.uint8))
    return folder


def station(tmp_path: Path, images: Path, extra: str = "", model: Path | str = "no-model") -> Path:
    path = tmp_path / "inspectd.toml"
    path.write_text(f'[model]\npath = "{model}"\n[source]\nkind = "directory"\npath = "{images}"\n[journal]\nenabled = false\n'
                    f'[archive]\npath = "{tmp_path}/archive"\n{extra}')
    return path


def both(capsys, path: Path, *run_args: str) -> tuple[list[str], str]:
    """check's and run's stderr lines, asserted equal and exit 78; and check's stdout."""
    code, out = main(["check", "--config", str(path)]), capsys.readouterr()
    checked = out.err.splitlines()
    assert code == EX_CONFIG, out
    code, run = main(["run", "--config", str(path), *run_args]), capsys.readouterr()
    assert code == EX_CONFIG and run.err.splitlines() == checked, (checked, run.err)
    assert all(line.startswith(f"inspectd: {path}: ") for line in checked)
    return checked, out.out


def test_check_and_run_print_every_error_at_once(tmp_path, images, capsys):
    """The file's errors, the rules across tables, and what the parts it names say, one line each (today: the first only)."""
    path = station(tmp_path, images, '[trigger]\nkind = "interval"\ninterval_ms = 1e12\n'
                                     '[decision]\nconfirm = [2, 3]\nmin_defect_area = 19201\n'
                                     '[gpio]\nchip = "memory"\nreject = { line = "GPIO17" }\nready = { line = "GPIO17", period_ms = nan }\n',
                   model=DEMO_MODEL)
    path.write_text(path.read_text().replace("[archive]\n", "[archive]\nmax_mb = 1e12\n"))
    lines, _ = both(capsys, path)
    where = f"inspectd: {path}: key"
    assert lines == [
        f"{where} trigger.interval_ms: must be at most 86400000 (a day), got 1000000000000.0; one frame every N milliseconds, e.g. 1000; "
        "longer means the station waits a day or more with a healthy watchdog",
        f"{where} gpio.ready.period_ms: must be a finite number, got nan; the square wave's period in milliseconds, e.g. 500",
        f"{where} gpio.ready.line: 'GPIO17' is already gpio.reject.line; each line can be used once: choose another line",
        f"{where} decision.confirm: needs consecutive frames of the same part, and an interval trigger takes one per part; remove it, "
        "or use trigger kind 'continuous'",
        f"{where} decision.min_defect_area: 19201 pixels is more than the 160x120 frame has: no part would ever be rejected; "
        "at most 19200; 0 = off",
        lines[5],  # the filesystem's size depends on the machine
    ]
    assert lines[5].startswith(f"{where} archive.max_mb: 1e+12 MB is more than the whole filesystem of {tmp_path} (")


def test_one_error_keeps_its_one_line(tmp_path, images, capsys):
    path = station(tmp_path, images, '[trigger]\nkind = "interval"\ninterval_ms = nan\n', model=DEMO_MODEL)
    lines, _ = both(capsys, path)
    assert lines == [f"inspectd: {path}: key trigger.interval_ms: must be a finite number, got nan; one frame every N milliseconds, e.g. 1000"]


def test_check_creates_nothing_and_says_what_it_looked_at(tmp_path, images, capsys):
    """The archive folder is judged on its nearest existing parent (today check created it), no line is requested."""
    path = station(tmp_path, images, '[gpio]\nchip = "memory"\nreject = { line = "GPIO17" }\n', model=DEMO_MODEL)
    path.write_text(path.read_text().replace(f'path = "{tmp_path}/archive"', f'path = "{tmp_path}/state/archive"'))
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: OK: directory source, continuous trigger, model {DEMO_MODEL}")
    assert "  source: first frame '000.png' read, 160x120 after the ROI" in out
    assert "  gpio: chip 'memory' opened; lines not requested: gpio.reject.line 'GPIO17', free" in out
    assert any(line.startswith(f"  archive: {tmp_path}/state/archive will be created in {tmp_path}, writable; quota 500 MB") for line in out)
    assert sorted(os.listdir(tmp_path)) == ["images", "inspectd.toml"]


@pytest.mark.parametrize("archive,expected", [
    ('path = "/etc/passwd/archive"', "key archive.path: /etc/passwd, where it would be created, is not a folder; "),
    ('path = "/proc/inspectd-archive"', "key archive.path: /proc, where it would be created, is on the kernel's proc filesystem, "),
    ('path = "{tmp}/archive"\nmax_mb = 1e12', "key archive.max_mb: 1e+12 MB is more than the whole filesystem of "),
])
def test_an_archive_that_cannot_work_is_refused(tmp_path, images, capsys, archive, expected):
    path = station(tmp_path, images)
    path.write_text(path.read_text().replace(f'path = "{tmp_path}/archive"', archive.format(images=images, tmp=tmp_path)))
    lines, _ = both(capsys, path)
    assert any(line.startswith(f"inspectd: {path}: {expected.format(images=images)}") for line in lines), lines
    assert not (tmp_path / "archive").exists()


def test_a_camera_or_stream_is_not_opened_and_check_says_so(tmp_path, images):
    """A FIFO as the OpenCV device: opening it would block (the hang tests use one), so check finishing proves it was not."""
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    path = station(tmp_path, images, model=DEMO_MODEL)
    path.write_text(path.read_text().replace(f'kind = "directory"\npath = "{images}"', f'kind = "opencv"\ndevice = "{fifo}"'))
    result = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "check", "--config", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"  source: {fifo} not opened (a camera or stream may be held by a running daemon" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed here")
def test_picamera2_without_its_module_is_a_configuration_error(tmp_path, images, capsys):
    """Today check accepts it and run exits 2, which the unit restarts."""
    path = station(tmp_path, images)
    path.write_text(path.read_text().replace(f'kind = "directory"\npath = "{images}"', 'kind = "picamera2"'))
    lines, _ = both(capsys, path)
    assert f"inspectd: {path}: key source.kind: the picamera2 module is missing; apt install python3-picamera2 and create the venv " \
           "with --system-site-packages" in lines


def test_the_roi_must_fit_every_replayed_frame(tmp_path, images, capsys):
    """Today check reads the first frame only, and run stops (78) at the frame that does not fit."""
    cv2.imwrite(str(images / "002.png"), np.full((60, 80, 3), 128, np.uint8))
    path = station(tmp_path, images)
    path.write_text(path.read_text().replace("[journal]", "roi = [0, 0, 100, 100]\n[journal]"))
    lines, out = both(capsys, path)
    assert f"inspectd: {path}: key source.roi: [0, 0, 100, 100] reaches outside the 80x60 frame '002.png'; make it fit inside every " \
           "frame of the folder" in lines
    assert "  source: first frame '000.png' read, 100x100 after the ROI" in out.splitlines()


def test_a_threshold_far_from_the_model_folders_is_refused(tmp_path, images, capsys):
    """Today: accepted, and a station that never rejects."""
    path = station(tmp_path, images, model=DEMO_MODEL)
    path.write_text(path.read_text().replace(f'path = "{DEMO_MODEL}"', f'path = "{DEMO_MODEL}"\nthreshold = 1e6'))
    lines, _ = both(capsys, path)
    assert lines == [f"inspectd: {path}: key model.threshold: 1e+06 is more than 10 times off the model folder's threshold 146.1: "
                     "almost no part would be rejected; a raw score between 14.61 and 1461, or remove it to use the folder's"]


def test_a_frame_limit_beyond_this_machines_memory_is_refused(tmp_path, images, capsys):
    if INT_MAX * BYTES_PER_PIXEL <= memory_limit():
        pytest.skip("this machine has the memory for the largest frame the key allows")
    path = station(tmp_path, images)
    path.write_text(path.read_text().replace("[journal]", f"max_pixels = {INT_MAX}\n[journal]"))
    lines, _ = both(capsys, path)
    assert any(line.startswith(f"inspectd: {path}: key source.max_pixels: {INT_MAX} pixels a frame would take about 32.0 GB from file "
                               "to verdict, more than the ") for line in lines), lines


class Header(MemoryGpio):
    """A chip whose lines are GPIO0..GPIO27 at offsets 0..27, by name or by offset, like a Pi's header."""

    def line_info(self, line: str | int, *, key: str | None = None) -> LineInfo:
        name = str(line).strip().removeprefix("GPIO")
        if not name.isdigit() or int(name) > 27:
            raise GpioError(f"no line {line!r} on header", key=key, fix="`inspectd doctor` lists the lines")
        held = super().line_info(f"GPIO{name}")
        return LineInfo(int(name), f"GPIO{name}", held.used, held.consumer)

    def close(self) -> None:
        """Closing our handle on a chip releases nothing others hold."""


@pytest.fixture
def header(monkeypatch) -> Header:
    chip = Header()
    monkeypatch.setattr(devices, "open_backend", lambda name: chip)
    return chip


def gpio_errors(tmp_path: Path, lines: str, *, daemon_may_run: bool = True) -> list[str]:
    path = tmp_path / "gpio.toml"
    path.write_text(f'[source]\nkind = "opencv"\n[trigger]\nkind = "gpio"\nline = "GPIO22"\n[gpio]\nchip = "header"\n{lines}')
    try:
        check_gpio(load(path), daemon_may_run=daemon_may_run)
    except ConfigError as error:
        return [str(each).removeprefix(f"{path}: ") for each in every(error)]
    return []


def test_gpio_lines_are_looked_up_on_the_chip_not_requested(tmp_path, header):
    """A name and an offset may be one line (only the chip knows); a line must exist and be free. Today check opened the chip only."""
    header.output("GPIO4", consumer="w1-gpio")  # a kernel driver holds it
    errors = gpio_errors(tmp_path, '[gpio.reject]\nline = "GPIO17"\n[gpio.ready]\nline = "17"\n')
    assert errors == ["key gpio.ready.line: '17' is offset 17 on this chip, the line of gpio.reject.line; each line can be used once: "
                      "choose another line"]
    assert gpio_errors(tmp_path, '[gpio.reject]\nline = "GPIO40"\n') == ["key gpio.reject.line: no line 'GPIO40' on header; "
                                                                         "`inspectd doctor` lists the lines"]
    assert gpio_errors(tmp_path, '[gpio.reject]\nline = "GPIO4"\n') == [
        "key gpio.reject.line: line 'GPIO4' (offset 4) is in use by 'w1-gpio'; stop it (or free the pin in config.txt) or choose another line"]
    assert gpio_errors(tmp_path, '[gpio.reject]\nline = "GPIO17"\n[gpio.ready]\nline = "GPIO27"\n') == []
    for line in ("GPIO17", "GPIO27", "GPIO22"):
        assert header.history(line) == [], "nothing was requested"


def test_lines_held_by_the_running_daemon_pass_check_but_not_run(tmp_path, header):
    """`check` before `systemctl reload` sees the running daemon's lines; `run` needs them free, as requesting them would."""
    header.output("GPIO17", consumer="inspectd-reject")
    assert gpio_errors(tmp_path, '[gpio.reject]\nline = "GPIO17"\n') == []
    assert gpio_errors(tmp_path, '[gpio.reject]\nline = "GPIO17"\n', daemon_may_run=False) == [
        "key gpio.reject.line: line 'GPIO17' (offset 17) is in use by 'inspectd-reject'; stop it (or free the pin in config.txt) "
        "or choose another line"]


def test_check_reads_a_real_chips_line_info(tmp_path, sim_chip):  # noqa: F811
    """libgpiod's line info, on the kernel's GPIO simulator: names resolved to offsets, holders named, nothing requested."""
    from inspectd.daemon.gpio import open_backend

    other = open_backend(sim_chip.label)
    other.output("GPIO27", consumer="someone")
    path = tmp_path / "gpio.toml"

    def errors(lines: str) -> list[str]:
        path.write_text(f'[source]\nkind = "opencv"\n[gpio]\nchip = "{sim_chip.label}"\n{lines}')
        try:
            check_gpio(load(path), daemon_may_run=False)
        except ConfigError as error:
            return [each.key for each in every(error)]
        return []

    assert errors('[gpio.reject]\nline = "GPIO17"\n[gpio.ready]\nline = "0"\n') == ["gpio.ready.line"]  # GPIO17 is offset 0
    assert errors('[gpio.reject]\nline = "GPIO27"\n[gpio.ready]\nline = "GPIO99"\n') == ["gpio.reject.line", "gpio.ready.line"]
    assert errors('[gpio.reject]\nline = "GPIO17"\n[gpio.ready]\nline = "GPIO22"\n') == []
    assert not other.line_info("GPIO17").used and not other.line_info("GPIO22").used  # looked at, never requested
    other.close()
