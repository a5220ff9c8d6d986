"""The station loop with real parts: the demo model, demo images, a directory source, an
in-memory output, a real sd_notify socket, and the daemon as a real process for signals."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_cli
from inspectd.testing.notify import NotifySocket
from inspectd.daemon.runtime.heatmap import overlay
from inspectd.daemon.station.config import load
from inspectd.daemon.station.outputs.archive import ArchiveConfig
from inspectd.daemon.station.outputs.journal import JournalOutput
from inspectd.daemon.station.outputs.memory import MemoryOutput
from inspectd.daemon.station.verdict import Verdict
from inspectd.daemon.station.sources import Frame
from inspectd.daemon.station.triggers import ContinuousConfig, IntervalConfig
from inspectd.daemon.station.loop import Station
from inspectd.daemon.demo.scene import generate_station_dataset


@pytest.fixture(scope="module")
def station_images(tmp_path_factory) -> Path:
    return generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=5, n_test_per_size=3)


def write_config(path: Path, demo_model: Path, source: str, extra: str = "") -> Path:
    path.write_text(f"""
[model]
path = "{demo_model}"
[source]
{source}
[archive]
path = "{path.parent / 'archive'}"
{extra}
""")
    return path


def replay(tmp_path, demo_model, folder, extra="", **station_args) -> tuple[MemoryOutput, int]:
    config = load(write_config(tmp_path / "inspectd.toml", demo_model, f'kind = "directory"\npath = "{folder}"', extra))
    memory = MemoryOutput()
    code = Station(config, extra_outputs=[memory], **station_args).run()
    return memory, code


def test_replay_gives_one_verdict_per_image_same_as_infer(demo_model, station_images, tmp_path):
    folder = tmp_path / "all"
    folder.mkdir()
    for path in sorted((station_images / "test").glob("*/*.png")):
        (folder / f"{path.parent.name}_{path.name}").symlink_to(path)
    memory, code = replay(tmp_path, demo_model, folder)
    assert code == 0
    images = sorted(folder.iterdir())
    assert [v.source for v in memory.verdicts] == [p.name for p in images]
    assert [v.frame for v in memory.verdicts] == list(range(1, len(images) + 1))
    infer = run_cli("infer", demo_model, *images, "--json")
    expected = [json.loads(line) for line in infer.stdout.splitlines()]
    assert [v.verdict for v in memory.verdicts] == [r["verdict"] for r in expected]
    assert [round(v.score, 3) for v in memory.verdicts] == [round(r["score"], 3) for r in expected]
    kinds = [kind for kind, _, _ in memory.events]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "fault" not in kinds
    rejects = [v for v in memory.verdicts if v.rejected]
    assert rejects and all(v.archived is not None and v.archived.is_file() for v in rejects)
    assert all(v.archived is None for v in memory.verdicts if not v.rejected)


def test_frames_limit_and_loop_mode(demo_model, station_images, tmp_path):
    config = load(write_config(tmp_path / "c.toml", demo_model, f'kind = "directory"\npath = "{station_images / "test" / "good"}"\nmode = "loop"'))
    memory = MemoryOutput()
    assert Station(config, frames=12, extra_outputs=[memory]).run() == 0
    assert len(memory.verdicts) == 12  # 5 images, looped
    assert [v.source for v in memory.verdicts[:6]] == [f"{i:03d}.png" for i in range(5)] + ["000.png"]


def test_threshold_override_and_min_area(demo_model, station_images, tmp_path):
    small, large = station_images / "test" / "stain_small", station_images / "test" / "stain_large"
    memory, _ = replay(tmp_path, demo_model, small)
    assert memory.verdicts and all(v.rejected and v.defect_area is None for v in memory.verdicts)  # no area unless asked for
    both = tmp_path / "stains"
    both.mkdir()
    for folder in (small, large):
        for path in folder.glob("*.png"):
            (both / f"{folder.name}_{path.name}").symlink_to(path)
    # Above the demo folder's threshold: 11,000-13,000 pixels of the 480x360 frame for a small stain, 20,000-23,000 for a large one.
    memory, _ = replay(tmp_path, demo_model, both, extra="[decision]\nmin_defect_area = 16000")
    assert [v.rejected for v in memory.verdicts] == [v.source.startswith("stain_large") for v in memory.verdicts]
    for v in memory.verdicts:
        assert v.score > v.threshold  # every stain is above the threshold: the area alone decided
        # Counted in the frame's own pixels (not the model's 128x128 map), above the image threshold by default.
        assert v.defect_area == np.count_nonzero(v.inspection.anomaly_map() > v.threshold)
        assert v.rejected == (v.defect_area >= 16000)
    config_text = (tmp_path / "inspectd.toml").read_text().replace("[model]\n", "[model]\nthreshold = 100000.0\n")
    (tmp_path / "inspectd.toml").write_text(config_text.replace("[decision]\nmin_defect_area = 16000", ""))
    memory = MemoryOutput()
    Station(load(tmp_path / "inspectd.toml"), extra_outputs=[memory]).run()
    assert memory.verdicts and not any(v.rejected for v in memory.verdicts) and all(v.threshold == 100000.0 for v in memory.verdicts)


def check_heatmaps_show_what_was_acted_on(verdicts) -> None:
    """Each heatmap picture (a JPEG: near, not equal) is the overlay labelled with its verdict, not the other verdict's:
    where the two overlays differ (the label's words and colour) it is several times nearer to its own."""
    for v in verdicts:
        picture = cv2.imread(str(v.archived.with_name(v.archived.stem + "-heatmap.jpg"))).astype(np.int16)
        acted_on = overlay(v.pixels, v.inspection, v.rule, v.verdict).astype(np.int16)
        other = overlay(v.pixels, v.inspection, v.rule, Verdict.PASS if v.rejected else Verdict.REJECT).astype(np.int16)
        label = np.any(acted_on != other, axis=-1)
        near, far = np.abs(picture - acted_on)[label].mean(), np.abs(picture - other)[label].mean()
        assert label.any() and near * 3 < far, (v.source, v.verdict, near, far)
        assert np.abs(picture - acted_on).mean() < 3, v.source  # the overlay itself, up to JPEG's loss


def test_archived_heatmap_shows_the_verdict_and_threshold_acted_on(demo_model, station_images, tmp_path):
    """A configured threshold, min_defect_area or confirm can overrule the model's own call: the
    archived heatmap must be labelled with the verdict and threshold that drove the reject line."""
    good = station_images / "test" / "good"
    memory, _ = replay(tmp_path, demo_model, good, extra="pass_sample_every = 1")  # written under [archive]
    assert not any(v.rejected for v in memory.verdicts)
    model_threshold = memory.verdicts[0].threshold
    # A configured threshold below every good mug's score: the model alone passes them, the station rejects them.
    config_text = (tmp_path / "inspectd.toml").read_text().replace("[model]\n", f"[model]\nthreshold = {model_threshold / 100}\n")
    (tmp_path / "inspectd.toml").write_text(config_text)
    memory = MemoryOutput()
    Station(load(tmp_path / "inspectd.toml"), extra_outputs=[memory]).run()
    assert memory.verdicts and all(v.rejected and v.score <= model_threshold for v in memory.verdicts)
    check_heatmaps_show_what_was_acted_on(memory.verdicts)
    # min_defect_area larger than the frame: the model alone rejects the stains, the station passes them.
    (tmp_path / "area").mkdir()
    memory, _ = replay(tmp_path / "area", demo_model, station_images / "test" / "stain_large",
                       extra="pass_sample_every = 1\n[decision]\nmin_defect_area = 1000000")
    assert memory.verdicts and all(not v.rejected and v.score > v.threshold for v in memory.verdicts)
    check_heatmaps_show_what_was_acted_on(memory.verdicts)


def test_unreadable_file_is_a_fault_not_a_verdict(demo_model, station_images, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.png").symlink_to(station_images / "test" / "good" / "000.png")
    (folder / "b.png").write_bytes(b"not an image")
    (folder / "c.png").symlink_to(station_images / "test" / "stain_large" / "000.png")
    memory, code = replay(tmp_path, demo_model, folder)
    assert code == 0
    assert [v.source for v in memory.verdicts] == ["a.png", "c.png"]
    faults = [message for kind, message, _ in memory.events if kind == "fault"]
    assert len(faults) == 1 and "b.png" in faults[0]


def test_gpio_reject_pulse_and_ready_line_in_memory(demo_model, station_images, tmp_path):
    """The full loop drives the reject and ready lines (in-memory GPIO backend)."""
    folder = station_images / "test" / "stain_large"
    config = load(write_config(tmp_path / "g.toml", demo_model, f'kind = "directory"\npath = "{folder}"\nmode = "loop"',
                               '[gpio]\nchip = "memory"\n[gpio.reject]\nline = "GPIO17"\npulse_ms = 30\n[gpio.ready]\nline = "GPIO27"\nperiod_ms = 100'))
    memory = MemoryOutput()
    station = Station(config, extra_outputs=[memory])
    gpio = station.devices.gpio
    runner = threading.Thread(target=station.run)
    runner.start()
    ready_edges = lambda: sum(active for _, active in gpio.history("GPIO27"))  # noqa: E731
    assert memory.wait_for(lambda m: len(m.verdicts) >= 3 and ready_edges() >= 2)  # re-checked at every verdict
    station.request_stop()
    runner.join(timeout=30)
    reject = gpio.history("GPIO17")
    assert any(active for _, active in reject) and reject[-1][1] is False  # pulsed, released inactive
    ready = [active for _, active in gpio.history("GPIO27")]
    assert ready.count(True) >= 2 and ready[-1] is False


def test_every_part_can_be_closed_twice(demo_model, station_images, tmp_path):
    """Sources, triggers, outputs, GPIO devices and the station itself: a second close() is harmless."""
    good = station_images / "test" / "good"
    config = load(write_config(tmp_path / "c.toml", demo_model, f'kind = "directory"\npath = "{good}"',
                               '[journal]\nlog = "rejects"\n[trigger]\nkind = "gpio"\nline = "GPIO22"\n'
                               '[gpio]\nchip = "memory"\n[gpio.reject]\nline = "GPIO17"\n[gpio.ready]\nline = "GPIO27"'))
    memory = MemoryOutput()
    station = Station(config, extra_outputs=[memory])
    gpio = station.devices.gpio
    station.inspect(Frame(cv2.imread(str(good / "000.png")), "000.png", time.monotonic()))
    journal_text = io.StringIO()
    journal = JournalOutput(config.journal, stream=journal_text)
    journal.verdict(memory.verdicts[0])
    parts = [config.source.open(), IntervalConfig().open(None), ContinuousConfig().open(None), journal,
             ArchiveConfig(path=str(tmp_path / "archive")).open(print)]
    for part in parts:
        part.close()
        part.close()
    assert journal_text.getvalue().count("1 frames, 0 rejects") == 1  # the closing summary, once
    station.close()
    station.close()
    assert station.devices.closed and station.pipeline.closed
    for line in ("GPIO17", "GPIO27", "GPIO22"):
        gpio.output(line, consumer="again")  # every line was released
    assert gpio.level("GPIO17") is False and gpio.level("GPIO27") is False


def test_config_errors_exit_78_with_one_line_each(demo_model, station_images, tmp_path):
    cases = {
        "unknown key": ('[model]\npath = "x"\nfoo = 1\n', "key model.foo: unknown key; valid keys in [model]: path, device, threshold, precision"),
        "wrong type": (f'[model]\npath = "{demo_model}"\n[trigger]\nkind = "interval"\ninterval_ms = "fast"\n',
                       "key trigger.interval_ms: must be a number, got 'fast'"),
        "not finite": (f'[model]\npath = "{demo_model}"\n[trigger]\nkind = "interval"\ninterval_ms = nan\n',
                       "key trigger.interval_ms: must be a finite number, got nan; "),
        "bad choice": (f'[model]\npath = "{demo_model}"\n[source]\nkind = "webcam"\n',
                       "key source.kind: 'webcam' is not a source kind; use one of: picamera2, opencv, directory"),
        "another kind's key": ('[source]\nkind = "directory"\npath = "/tmp"\ndevice = "0"\n',
                               "key source.device: belongs to the opencv source, not to kind = 'directory'; remove it, or set kind = 'opencv'"),
        "roi outside the frames": (f'[model]\npath = "{demo_model}"\n[source]\nkind = "directory"\npath = "{station_images / "test" / "good"}"\n'
                                   f'roi = [0, 0, 100000, 50]\n[journal]\nenabled = false\n',
                                   "key source.roi: [0, 0, 100000, 50] reaches outside the 480x360 frame '000.png'"),
        "no such chip": (f'[model]\npath = "{demo_model}"\n[source]\nkind = "directory"\npath = "{station_images / "test" / "good"}"\n'
                         f'[gpio]\nchip = "no-such-chip"\n', "key gpio.chip: "),
        "missing model": (f'[model]\npath = "/nowhere/model"\n[source]\nkind = "directory"\npath = "{station_images / "test" / "good"}"\n',
                          "key model.path: "),
        "bad toml": ("[model\n", "not valid TOML"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.toml"
        path.write_text(text)
        for command in ("check", "run"):
            result = run_cli(command, "--config", path)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 78, (name, command, result.stderr)
            # every error at once, one line each, each naming the file; the one this case is about among them
            assert lines and all(line.startswith(f"inspectd: {path}") for line in lines), (name, lines)
            assert any(expected in line for line in lines), (name, lines)
    assert run_cli("check", "--config", tmp_path / "absent.toml").returncode == 78


def start_daemon(config: Path, notify: NotifySocket, watchdog_usec: int) -> subprocess.Popen:
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(watchdog_usec))
    return subprocess.Popen([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def terminate(daemon: subprocess.Popen) -> str:
    """SIGTERM, as systemd stops the service; returns what the daemon wrote to stderr."""
    daemon.send_signal(signal.SIGTERM)
    return daemon.communicate(timeout=30)[1]


def test_sd_notify_ready_watchdog_status_stopping(demo_model, station_images, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    config = write_config(tmp_path / "n.toml", demo_model, f'kind = "directory"\npath = "{station_images / "test" / "good"}"\nmode = "loop"')
    watchdog_usec = 2_000_000
    daemon = start_daemon(config, notify, watchdog_usec)
    try:
        notify.wait_for("READY=1")
        ready = next(message for _, message in notify.messages if "READY=1" in message)
        assert "STATUS=inspecting" in ready and " 1 frames" in ready  # READY only after the first verdict
        time.sleep(3.0)
        notify.wait_for("STATUS=inspecting")
        stderr = terminate(daemon)
    finally:
        daemon.kill()
        notify.close()
    assert daemon.returncode == 0, stderr
    notify.wait_for("STOPPING=1", 1)
    pings = notify.pings()
    assert len(pings) >= 4
    intervals = [b - a for a, b in zip(pings, pings[1:])]
    assert max(intervals) <= watchdog_usec / 2e6, intervals
    assert "stopped (stopped by SIGTERM):" in stderr.splitlines()[-1]  # the stop record, last


def test_watchdog_pings_stop_when_the_source_hangs(demo_model, station_images, tmp_path):
    """OpenCV opening a FIFO that no one writes to blocks forever: a real hung stream."""
    notify = NotifySocket(tmp_path / "notify.sock")
    config = write_config(tmp_path / "h.toml", demo_model, f'kind = "directory"\npath = "{station_images / "test" / "good"}"\nmode = "loop"')
    daemon = start_daemon(config, notify, 2_000_000)
    try:
        notify.wait_for("READY=1")
        os.mkfifo(tmp_path / "stream.fifo")
        write_config(config, demo_model, f'kind = "opencv"\ndevice = "{tmp_path / "stream.fifo"}"')
        daemon.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1")
        hung_at = notify.wait_for("READY=1", after=reloading)  # sent just before the new capture thread opens the stream
        time.sleep(3.0)
        last_ping = notify.pings()[-1]
        assert daemon.poll() is None  # still running: systemd's watchdog is what kills it
        assert time.monotonic() - last_ping > 1.5, "pings went on while the source was hung"
        assert last_ping < hung_at + 1.5
    finally:
        daemon.kill()
        daemon.communicate()
        notify.close()


def test_sighup_reload_swaps_model_and_keeps_old_on_bad_config(demo_model, station_images, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    good = station_images / "test" / "good"
    config = write_config(tmp_path / "r.toml", demo_model, f'kind = "directory"\npath = "{good}"\nmode = "loop"\n[trigger]\nkind = "interval"\ninterval_ms = 50')
    daemon = start_daemon(config, notify, 0)
    try:
        notify.wait_for("READY=1")
        text = config.read_text()
        config.write_text(text.replace("[model]\n", "[model]\nthreshold = 1400.0\n"))  # within 10x of the folder's
        daemon.send_signal(signal.SIGHUP)
        applied = notify.wait_for("READY=1", after=notify.wait_for("RELOADING=1"))
        config.write_text(text.replace("[model]\n", "[model]\nbogus = 1\n"))
        daemon.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1", after=notify.wait_for("RELOADING=1", after=applied))
        time.sleep(1.0)
        stderr = terminate(daemon)
    finally:
        daemon.kill()
        notify.close()
    assert daemon.returncode == 0, stderr
    lines = stderr.splitlines()
    reloaded = next(i for i, line in enumerate(lines) if "reloaded" in line)
    refused = next(i for i, line in enumerate(lines) if "reload failed, keeping the running configuration" in line)
    assert reloaded < refused and "key model.bogus: unknown key" in lines[refused]
    after = [line for line in lines[reloaded:] if "frame" in line and "score" in line]
    assert after and all("<= 1400.000" in line for line in after)  # the new threshold, kept after the bad reload
