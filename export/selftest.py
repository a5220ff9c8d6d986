"""The self-test a model folder carries (see inspectd.daemon.runtime.selftest, which replays it on the device).

A handful of the verification frames, chosen where a runtime is most likely to go wrong:
the highest score (where f16 overflows first), the lowest, and those nearest the threshold
on either side (where a small error flips a verdict). Stored as the graph inputs inspectd's
own pre-processing made, with the torch model's score and coarse map for each.
"""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path

import numpy as np

from inspectd.daemon.runtime.decision import Rule
from inspectd.daemon.schema import SELFTEST_FILE, Preprocessing, SelfTest
from inspectd.daemon.runtime.preprocess import prepare

from .verify import Frame, Scores, pixels_of

MAX_FRAMES = 8
MIN_FRAMES = 3
MAX_INPUT_BYTES = 5 * 1024 * 1024  # of raw tensors: about 4 MB once compressed (measured 80%)


def choose(reference: np.ndarray, threshold: float, count: int) -> list[int]:
    """Indices of up to ``count`` frames: highest, lowest, then nearest the threshold, above and below alternately."""
    order = [int(np.argmax(reference)), int(np.argmin(reference))]
    rule = Rule(threshold)
    above = sorted((i for i in range(len(reference)) if rule.anomalous(reference[i])[0]), key=lambda i: reference[i] - threshold)
    below = sorted((i for i in range(len(reference)) if not rule.anomalous(reference[i])[0]), key=lambda i: threshold - reference[i])
    for pair in zip_longest(above, below):
        order += [i for i in pair if i is not None]
    chosen: list[int] = []
    for index in order:
        if index not in chosen:
            chosen.append(index)
    return chosen[:count]


def write(folder: Path, frames: list[Frame], scores: Scores, threshold: float, spec: Preprocessing,
          max_error: float, max_error_reduced: float) -> SelfTest:
    """Write selftest.npz into ``folder``; returns the metadata's ``self_test`` section."""
    frame_bytes = spec.input_height * spec.input_width * 3 * 4
    count = max(MIN_FRAMES, min(MAX_FRAMES, MAX_INPUT_BYTES // frame_bytes))
    chosen = choose(scores.reference, threshold, count)
    inputs = np.concatenate([prepare(pixels_of(frames[i]), spec) for i in chosen]).astype(np.float32)
    np.savez_compressed(
        folder / SELFTEST_FILE,
        inputs=inputs,
        reference_scores=scores.reference[chosen].astype(np.float32),
        reference_maps=scores.reference_maps[chosen].astype(np.float32),
    )
    return SelfTest(frames=tuple(scores.names[i] for i in chosen), max_relative_error=max_error, max_relative_error_reduced=max_error_reduced)
