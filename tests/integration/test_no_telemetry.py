"""The station never starts OpenVINO's telemetry: no converter imported, no fork to send a Google Analytics event,
no ~/intel written, whatever the command (each in a fresh process, as on a station)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from inspectd.daemon.demo.scene import generate_station_dataset

# The CLI's main in a fresh process, then the modules it left imported (the last line of stdout).
RUN_AND_LIST = """
import json, sys
from inspectd.daemon.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("openvino.tools", "openvino_telemetry")))))
sys.exit(code)
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    data = generate_station_dataset(tmp_path_factory.mktemp("station"), n_train=0, n_test_good=2, n_test_per_size=1)
    return sorted((data / "test").glob("*/*.png"))


def station_config(folder, demo_model, images):
    config = folder / "inspectd.toml"
    config.write_text(f'[model]\npath = "{demo_model}"\n\n[source]\nkind = "directory"\npath = "{images[0].parent}"\n\n'
                      '[journal]\nenabled = false\n\n[archive]\nenabled = false\n\n[gpio]\nchip = "memory"\n')
    return config


@pytest.mark.parametrize("command", ["infer", "run", "check", "bench", "doctor"])
def test_no_command_starts_openvinos_telemetry(command, demo_model, images, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    config = station_config(tmp_path, demo_model, images)
    argv = {"infer": ["infer", demo_model, images[0]], "run": ["run", "--config", config, "--frames", "2"],
            "check": ["check", "--config", config], "bench": ["bench", demo_model, "--frames", "2"], "doctor": ["doctor"]}[command]
    result = subprocess.run([sys.executable, "-c", RUN_AND_LIST, *map(str, argv)], capture_output=True, text=True,
                            env={**os.environ, "HOME": str(home)}, cwd=tmp_path)
    assert command == "doctor" or result.returncode == 0, result.stderr  # doctor judges this machine, not the model
    assert json.loads(result.stdout.splitlines()[-1]) == [], result.stdout
    assert not (home / "intel").exists()  # where OpenVINO's telemetry keeps its client id and counts
