"""Issue 17, class 4: replacing a model is safe however it is done.

The daemon as a real process replays real demo frames in a loop while its model folder is replaced: model.bin
overwritten in place (held truncated, as ``cp`` does for a moment, and by ``cp`` of the same bytes), a reload in the
middle of a copy, and ``inspectd install-model`` (verify, self-test, swap, reload). The daemon must never die, never
lose a frame, and run exactly the model the folder held when it reloaded: the old one until a whole new one is there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import DEMO_MODEL, run_cli
from inspectd.daemon.demo.scene import generate_station_dataset

WAIT_S = 120.0  # for something that must happen (functional timeout, not a measurement)
VERDICT = re.compile(r"^inspectd: (PASS|REJECT) frame (\d+) score [\d.]+ (?:<=|>) ([\d.]+) ")


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    data = generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=2, n_test_per_size=1)
    folder = tmp_path_factory.mktemp("parts")
    for number, image in enumerate(sorted((data / "test").glob("*/*.png"))[:4]):
        shutil.copy(image, folder / f"{number:03d}.png")
    return folder


class Daemon:
    """``inspectd run`` as a process; its stderr lines (no journal socket here: a line per record) collected."""

    def __init__(self, config: Path) -> None:
        env = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
        self.process = subprocess.Popen([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def verdicts(self) -> list[tuple[int, float]]:
        return [(int(m[2]), float(m[3])) for line in list(self.lines) if (m := VERDICT.match(line))]

    def wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert self.process.poll() is None, f"the daemon died ({self.process.returncode}) waiting for {what}:\n" + "\n".join(self.lines[-20:])
            assert time.monotonic() < deadline, f"{what} did not happen:\n" + "\n".join(self.lines[-20:])
            time.sleep(0.1)

    def more_verdicts(self, count: int) -> None:
        start = len(self.verdicts())
        self.wait_for(lambda: len(self.verdicts()) >= start + count, f"{count} more verdicts")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        finally:
            self.process.kill()
        self.reader.join(timeout=5)
        return code


def station(tmp_path: Path, parts: Path, threshold: str = "") -> tuple[Path, Path]:
    model = tmp_path / "state" / "model"
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DEMO_MODEL, model)
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{model}"\n{threshold}\n[source]\nkind = "directory"\npath = "{parts}"\nmode = "loop"\n'
                      '[journal]\nenabled = true\n[archive]\nenabled = false\n')
    return config, model


def with_threshold(folder: Path, value: float) -> None:
    path = folder / "inspectd.json"
    meta = json.loads(path.read_text())
    meta["threshold"]["value"] = value
    path.write_text(json.dumps(meta, indent=2))


def contiguous(daemon: Daemon) -> bool:
    frames = [frame for frame, _ in daemon.verdicts()]
    return frames == list(range(1, len(frames) + 1))


@pytest.mark.parametrize("how", ["truncated for a while, then the same bytes", "cp of the same bytes", "another model's bytes, then back"])
def test_overwriting_model_bin_in_place_never_kills_the_running_station(tmp_path, parts, how):
    config, model = station(tmp_path, parts)
    weights = (model / "model.bin").read_bytes()
    daemon = Daemon(config)
    try:
        daemon.more_verdicts(5)
        if how.startswith("truncated"):
            with open(model / "model.bin", "wb") as handle:  # what cp does first; held while frames are judged
                handle.flush()
                daemon.more_verdicts(10)
                handle.write(weights)
        elif how.startswith("cp"):
            shutil.copyfile(DEMO_MODEL / "model.bin", model / "model.bin")
        else:
            (model / "model.bin").write_bytes(bytes(len(weights)))
            daemon.more_verdicts(10)
            (model / "model.bin").write_bytes(weights)
        daemon.more_verdicts(10)
    finally:
        code = daemon.stop()
    assert code == 0, "\n".join(daemon.lines[-20:])
    assert contiguous(daemon) and {threshold for _, threshold in daemon.verdicts()} == {146.103}


def test_install_model_verifies_swaps_and_the_running_station_reloads_it(tmp_path, parts):
    config, model = station(tmp_path, parts)
    new = tmp_path / "model-v2"
    shutil.copytree(DEMO_MODEL, new)
    with_threshold(new, 200.0)  # the same graph, another threshold: visible in every verdict record
    daemon = Daemon(config)
    try:
        daemon.more_verdicts(3)
        done = run_cli("install-model", new, "--config", config)
        daemon.more_verdicts(5)
    finally:
        code = daemon.stop()
    assert done.returncode == 0, done.stderr
    assert f"PID {daemon.process.pid} (" in done.stdout and "reloaded, runs the new model" in done.stdout, done.stdout
    assert json.loads((model / "inspectd.json").read_text())["threshold"]["value"] == 200.0
    assert round(json.loads((model.with_name("model.previous") / "inspectd.json").read_text())["threshold"]["value"], 2) == 146.1
    thresholds = [threshold for _, threshold in daemon.verdicts()]
    assert thresholds[0] == 146.103 and thresholds[-1] == 200.0 and thresholds == sorted(thresholds), "old, then new, never back"
    assert code == 0 and contiguous(daemon), "no frame lost across the swap"
    assert not list(model.parent.glob(".model.installing-*"))


@pytest.mark.parametrize("broken", ["a byte of model.bin flipped", "inspectd.json missing", "a threshold the station's override "
                                    "is 10x off", "model.xml of another shape, resigned"])
def test_install_model_refuses_what_the_station_would_refuse_and_changes_nothing(tmp_path, parts, broken):
    config, model = station(tmp_path, parts, threshold="threshold = 190.0")
    new = tmp_path / "model-v2"
    shutil.copytree(DEMO_MODEL, new)
    if broken.startswith("a byte"):
        data = bytearray((new / "model.bin").read_bytes())
        data[1000] ^= 0xFF
        (new / "model.bin").write_bytes(bytes(data))
    elif broken.startswith("inspectd.json"):
        (new / "inspectd.json").unlink()
    elif broken.startswith("a threshold"):
        with_threshold(new, 5000.0)
    else:
        import hashlib

        xml = (new / "model.xml").read_text().replace("128,128", "96,96", 1).replace('"128"', '"96"')
        (new / "model.xml").write_text(xml)
        meta = json.loads((new / "inspectd.json").read_text())
        meta["files"]["model.xml"] = {"bytes": len(xml.encode()), "sha256": hashlib.sha256(xml.encode()).hexdigest()}
        (new / "inspectd.json").write_text(json.dumps(meta))
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    done = run_cli("install-model", new, "--config", config)
    assert done.returncode in (2, 78) and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    assert sorted(p.name for p in model.parent.iterdir()) == ["model"], "nothing staged, nothing kept"


def test_a_reload_during_a_copy_in_place_keeps_the_running_model_until_the_copy_is_whole(tmp_path, parts):
    config, model = station(tmp_path, parts)
    new = tmp_path / "model-v2"
    shutil.copytree(DEMO_MODEL, new)
    with_threshold(new, 200.0)
    daemon = Daemon(config)
    try:
        daemon.more_verdicts(3)
        shutil.copyfile(new / "inspectd.json", model / "inspectd.json")  # cp new/* model/: the metadata first...
        (model / "model.bin").write_bytes((new / "model.bin").read_bytes()[:1000])  # ...model.bin half way
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda: any("reload failed, keeping the running configuration and model" in line for line in daemon.lines),
                        "the refused reload")
        daemon.more_verdicts(5)
        assert daemon.verdicts()[-1][1] == 146.103, "the running model is kept"
        shutil.copyfile(new / "model.bin", model / "model.bin")  # the copy is whole
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda: daemon.verdicts()[-1][1] == 200.0, "the new model")
    finally:
        code = daemon.stop()
    assert code == 0 and contiguous(daemon)
