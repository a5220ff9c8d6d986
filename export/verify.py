"""Export verification: the model folder, run through the daemon's own path, against the torch model.

Reference: anomalib's training-time pipeline (PIL decode, torchvision antialiased Resize,
Normalize, the checkpoint's PadimModel). Candidate: inspectd's runtime (OpenCV decode,
inspectd's resize, the exported OpenVINO graph). Both see the same files.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch

from inspectd.daemon.runtime.decision import Rule
from inspectd.daemon.runtime.images import read_image
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.runtime.selftest import coarse_map
from inspectd.daemon.schema import Verification

from .checkpoint import PadimCheckpoint

MAX_RELATIVE_SCORE_ERROR = 0.01  # of the threshold
READ_AHEAD = 4  # frames the torch reference runs ahead of the exported model


@dataclass
class Frame:
    name: str
    path: Path | None = None
    pixels: np.ndarray | None = None  # BGR uint8 (or gray, height x width), for frames that are not files


@dataclass
class Scores:
    names: list[str]
    reference: np.ndarray
    exported: np.ndarray
    map_correlation: np.ndarray
    map_max_delta: np.ndarray
    reference_maps: np.ndarray  # (frames, COARSE_MAP, COARSE_MAP): the torch maps, area-averaged, for the self-test


def synthetic_frames(seed: int = 0, gray: bool = False) -> list[Frame]:
    """Smooth random frames, square, non-square and large, for when no images are given: colour, or gray (one channel)."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for height, width in ((256, 256), (480, 640), (667, 1000), (1334, 2000)):
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        noise = rng.integers(-8, 9, smooth.shape)
        pixels = np.clip(smooth + noise, 0, 255).astype(np.uint8)
        frames.append(Frame(f"synthetic {width}x{height}", pixels=np.ascontiguousarray(pixels[:, :, 1]) if gray else pixels))
    return frames


def _reference(checkpoint: PadimCheckpoint, frame: Frame, transform) -> tuple[float, np.ndarray]:
    if frame.path is not None:
        from anomalib.data.utils.image import read_image as anomalib_read_image

        image = anomalib_read_image(frame.path, as_tensor=True)
    else:
        pixels = frame.pixels if frame.pixels.ndim == 3 else np.repeat(frame.pixels[:, :, None], 3, axis=2)  # gray: as PIL's convert("RGB")
        image = torch.from_numpy(pixels[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        result = checkpoint.model(transform(image).unsqueeze(0))
    return float(result.pred_score.reshape(-1)[0]), result.anomaly_map.reshape(result.anomaly_map.shape[-2:]).numpy()


def compare(checkpoint: PadimCheckpoint, model: Model, frames: list[Frame], advance: Callable[[], None] = lambda: None) -> Scores:
    """Every frame scored by the torch reference and by the exported model. The reference runs in a thread of its own,
    READ_AHEAD frames in front, while the exported model scores the frame before: torch and OpenVINO release the GIL, so
    the two halves overlap (every frame is still compared, score and map)."""
    transform = checkpoint.preprocess.transform()
    names, reference, exported, correlation, max_delta, coarse = [], [], [], [], [], []
    pending: deque = deque()
    remaining = iter(frames)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch-reference") as pool:
        def submit() -> None:
            frame = next(remaining, None)
            if frame is not None:
                pending.append((frame, pool.submit(_reference, checkpoint, frame, transform)))

        for _ in range(READ_AHEAD):
            submit()
        while pending:
            frame, future = pending.popleft()
            submit()
            result = model.infer(pixels_of(frame), frame.name)
            ref_score, ref_map = future.result()
            names.append(frame.name)
            reference.append(ref_score)
            exported.append(result.score)
            correlation.append(float(np.corrcoef(ref_map.ravel(), result.model_map.ravel())[0, 1]))
            max_delta.append(float(np.abs(ref_map - result.model_map).max()))
            coarse.append(coarse_map(ref_map))
            advance()
    return Scores(names, np.array(reference), np.array(exported), np.array(correlation), np.array(max_delta), np.array(coarse))


def pixels_of(frame: Frame) -> np.ndarray:
    return frame.pixels if frame.pixels is not None else read_image(frame.path)


def exported_scores(model: Model, frames: list[Frame], advance: Callable[[], None] = lambda: None) -> np.ndarray:
    scores = []
    for frame in frames:
        scores.append(model.infer(pixels_of(frame), frame.name).score)
        advance()
    return np.array(scores)


def settle_tie(threshold: float, reference: np.ndarray, tolerance: float) -> float | None:
    """A checkpoint threshold that sits on a verification image's score, moved off it.

    anomalib's F1-adaptive threshold is one of its validation images' scores, and anomalib
    rejects at ``score >= threshold``: that image's verdict then hangs on the last bit of
    floating point, in any runtime. inspectd rejects at ``score > threshold``, so when a
    reference score lies within ``tolerance`` of the threshold, the threshold moves to the
    middle of the gap between the highest score anomalib passes and the lowest it rejects:
    every verification image keeps anomalib's verdict and none sits on the edge.
    Returns None when no score is that close.
    """
    if not np.any(np.abs(reference - threshold) <= tolerance):
        return None
    passed, rejected = reference[reference < threshold], reference[reference >= threshold]
    low = passed.max() if passed.size else rejected.min() - 2 * tolerance
    high = rejected.min() if rejected.size else passed.max() + 2 * tolerance
    return float((low + high) / 2.0)


def report(scores: Scores, threshold: float, reference_threshold: float, inclusive_reference: bool, max_score_error: float) -> Verification:
    """The figures stored in inspectd.json and printed by export."""
    # anomalib's own verdict for the reference (it rejects at >= its threshold), the station's rule for the export
    reference_verdict = scores.reference >= reference_threshold if inclusive_reference else scores.reference > reference_threshold
    rule = Rule(threshold)
    flipped = [name for name, a, b in zip(scores.names, reference_verdict, scores.exported) if a != rule.anomalous(b)[0]]
    delta = np.abs(scores.exported - scores.reference)
    worst = int(np.argmax(delta))
    return Verification(
        frames=len(scores.names),
        max_abs_score_delta=float(delta.max()),
        max_relative_score_error=float(delta.max() / threshold),
        worst_frame=scores.names[worst],
        verdict_flips=len(flipped),
        flipped_frames=tuple(flipped),
        min_map_correlation=float(scores.map_correlation.min()),
        max_map_delta_relative=float(scores.map_max_delta.max() / threshold),
        max_relative_score_error_allowed=max_score_error,
        passed=bool(not flipped and delta.max() / threshold <= max_score_error),
    )
