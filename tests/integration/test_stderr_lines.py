"""Issue 17, class 8: without a journal socket, every record is a stderr line, and none is lost to the JPEG decoder.

read_image points descriptor 2 at a buffer for an instant while libjpeg decodes (its damage warnings have no other
channel). Records the loop wrote meanwhile went there too: lost, and when they mentioned libjpeg's words (a file
named so, a fault about another frame) they made a good frame "damaged". Large JPEGs (long decodes) named with the
words, replayed by the daemon as a process: one verdict line per frame, none refused.
"""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np

from conftest import DEMO_MODEL

WORDS = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters", "Inconsistent progression sequence", "Huffman")


def test_every_record_reaches_stderr_whatever_the_decoder_says(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    frame = cv2.resize(np.random.default_rng(0).integers(90, 160, (120, 160, 3), dtype=np.uint8), (4000, 3000))
    count = 30
    for index in range(count):  # every verdict line names its file: it carries the words while the next frame decodes
        cv2.imwrite(str(parts / f"{WORDS[index % len(WORDS)]} {index:02d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{parts}"\nmode = "once"\n'
                      '[journal]\nenabled = true\n[archive]\nenabled = false\n')
    env = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
    done = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = [line for line in done.stderr.splitlines() if line.startswith(("inspectd: PASS frame", "inspectd: REJECT frame"))]
    refused = [line for line in done.stderr.splitlines() if "damaged JPEG" in line]
    print(f"\nstderr: {len(verdicts)} verdict lines of {count} frames, {len(refused)} good frames called damaged")
    assert refused == [] and len(verdicts) == count, done.stderr[-3000:]
    assert [int(line.split(" frame ")[1].split()[0]) for line in verdicts] == list(range(1, count + 1))
