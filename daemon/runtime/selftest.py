"""The model folder's self-test: parity proven on the device that inspects, at the precision it runs.

Export keeps a handful of its verification frames as ready graph inputs (``selftest.npz``:
the tensors inspectd's own pre-processing made, the torch model's score for each and a
coarse copy of its anomaly map). At every load the runtime replays them through the
compiled graph and compares. A precision that gives a non-finite value, a verdict flip or
an error over the limit is not used on this device: the runtime falls back to the next one,
down to f32 (see ``model.Model``). Nothing here knows about torch: the references are numbers.

    >>> cases = load_cases(read_model_folder("models/demo-mug"))       # doctest: +SKIP
    >>> result = run_self_test(compiled, "anomaly_map", "score", cases, "f32")  # doctest: +SKIP
    >>> result.passed, result.problem                                    # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import time
import zipfile
from dataclasses import dataclass

import cv2
import numpy as np

from inspectd.daemon.errors import ModelFolderError
from inspectd.daemon.runtime.decision import Rule
from inspectd.daemon.schema import SELFTEST_FILE, ModelFolder, ModelMetadata

COARSE_MAP = 16  # side of the coarse anomaly map kept per frame (area mean of the model's map)
MAX_SELFTEST_BYTES = 256 * 1024 * 1024  # an array of selftest.npz, at most (a handful of graph inputs: a few MB)


@dataclass(frozen=True)
class SelfTestCases:
    names: tuple[str, ...]
    inputs: np.ndarray  # (N, H, W, 3) float32: graph inputs, ready to feed
    reference_scores: np.ndarray  # (N,) the torch model's scores
    reference_maps: np.ndarray  # (N, COARSE_MAP, COARSE_MAP) the torch model's maps, area-averaged
    threshold: float  # the folder's threshold: verdicts are compared at it
    limit: float  # largest score/map error allowed at f32, as a fraction of the threshold
    reduced_limit: float  # the same for bf16/f16 (tighter: the self-test sees only a handful of frames)


@dataclass(frozen=True)
class SelfTestResult:
    requested: str  # the precision asked of OpenVINO
    executed: str  # what the compiled model reports it runs (an x86 CPU without bf16/f16 runs f32)
    frames: int  # frames run: all of them when it passed, up to the first that failed otherwise
    max_score_error: float  # fraction of the threshold
    max_map_error: float
    flips: int
    limit: float
    problem: str | None  # why it failed; None when it passed
    seconds: float
    remembered: str | None = None  # when it ran, if this load took it from memory (``selftest_memory``) instead of replaying it

    @property
    def passed(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        head = f"self-test at {self.requested}" + (f" (runs as {self.executed} here)" if self.executed != self.requested else "")
        replay = ", not replayed: the same folder, device, OpenVINO and self-test since" if self.remembered else ""
        if not self.passed:
            return f"{head}: FAILED, {self.problem}{self.memory_note[:-1]}{replay})" if replay else f"{head}: FAILED, {self.problem}"
        return (f"{head}: passed on {self.frames} frames, score error {self.max_score_error * 100:.3f}% and map error "
                f"{self.max_map_error * 100:.3f}% of the threshold (limit {self.limit * 100:g}%), 0 flips, {self.seconds * 1000:.0f} ms"
                + (f"{self.memory_note[:-1]}{replay})" if replay else ""))

    @property
    def memory_note(self) -> str:
        """When a remembered outcome ran; empty for one this load ran."""
        return f" (remembered from {self.remembered})" if self.remembered else ""


def coarse_map(anomaly_map: np.ndarray) -> np.ndarray:
    """The map area-averaged to COARSE_MAP x COARSE_MAP: enough to see a heatmap drift, small to store."""
    plane = np.asarray(anomaly_map, dtype=np.float32).reshape(anomaly_map.shape[-2:])
    return cv2.resize(plane, (COARSE_MAP, COARSE_MAP), interpolation=cv2.INTER_AREA)


def load_cases(folder: ModelFolder) -> SelfTestCases:
    """Read the folder's ``selftest.npz`` (its sha256 was checked with the folder's other files)."""
    meta: ModelMetadata = folder.metadata
    path, names, spec = folder.self_test_path, meta.self_test.frames, folder.preprocessing
    input_shape = (spec.input_height, spec.input_width, 3)
    count = len(names)
    expected = {"inputs": (count, *input_shape), "reference_scores": (count,), "reference_maps": (count, COARSE_MAP, COARSE_MAP)}
    content = io.BytesIO(folder.content(SELFTEST_FILE))  # the bytes checked with the folder, not the file again
    try:
        with zipfile.ZipFile(content) as archive:  # each array's header first: its shape is allocated before it is read
            for key, shape in expected.items():
                with archive.open(f"{key}.npy") as member:
                    major, _ = np.lib.format.read_magic(member)
                    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    found, _, dtype = read_header(member)
                if found != shape or dtype != np.float32:
                    raise ModelFolderError(f"'{key}' is {dtype} {list(found)}, expected finite float32 {list(shape)}", file=path,
                                           fix="the files come from different exports, copy the whole folder again")
                size, needed = archive.getinfo(f"{key}.npy").file_size, 4 * math.prod(shape)
                if needed > min(size, MAX_SELFTEST_BYTES):  # more than the member holds (cut), or than any self-test is
                    raise ModelFolderError(f"'{key}' needs {needed / 2**20:.1f} MB, its member holds {size / 2**20:.1f} MB (a self-test is "
                                           f"at most {MAX_SELFTEST_BYTES // 2**20} MB)", file=path,
                                           fix="the files come from different exports, copy the whole folder again")
        content.seek(0)
        with np.load(content, allow_pickle=False) as data:
            inputs, scores, maps = data["inputs"], data["reference_scores"], data["reference_maps"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFolderError(f"not a readable self-test ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", file=path,
                               fix="copy the model folder again") from None
    for key, array in (("inputs", inputs), ("reference_scores", scores), ("reference_maps", maps)):
        if array.shape != expected[key] or array.dtype != np.float32 or not np.isfinite(array).all():
            raise ModelFolderError(f"'{key}' is {array.dtype} {list(array.shape)}, expected finite float32 {list(expected[key])}",
                                   file=path, fix="the files come from different exports, copy the whole folder again")
    return SelfTestCases(names, inputs, scores, maps, meta.threshold.value, meta.self_test.max_relative_error,
                         meta.self_test.max_relative_error_reduced)


def run_self_test(compiled, map_output: str, score_output: str, cases: SelfTestCases, requested: str) -> SelfTestResult:
    """Replay the cases through ``compiled`` (an OpenVINO CompiledModel) and judge them.

    It stops at the first frame that fails: a failing precision costs one frame, not all
    (the frames come highest score first, where f16 overflows first; under emulation or on a
    slow core that is most of a fallback's start-up time).
    """
    executed = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    limit = cases.limit if executed == "f32" else cases.reduced_limit
    request = compiled.create_infer_request()
    map_port, score_port = compiled.output(map_output), compiled.output(score_output)
    rule = Rule(cases.threshold)
    start = time.perf_counter()
    score_errors, map_errors, flips, problem, ran = [], [], 0, None, 0
    for name, tensor, reference, reference_map in zip(cases.names, cases.inputs, cases.reference_scores, cases.reference_maps):
        ran += 1
        outputs = request.infer({0: tensor[None]})
        score = float(np.asarray(outputs[score_port]).reshape(-1)[0])
        anomaly_map = np.asarray(outputs[map_port])
        if not np.isfinite(score) or not np.isfinite(anomaly_map).all():
            problem = f"non-finite {'score' if not np.isfinite(score) else 'anomaly map'} ({score:g}) on {name}"
            break
        score_errors.append(abs(score - reference) / cases.threshold)
        map_errors.append(float(np.abs(coarse_map(anomaly_map) - reference_map).max()) / cases.threshold)
        if rule.anomalous(score)[0] != rule.anomalous(reference)[0]:
            flips += 1
            problem = f"verdict flip on {name} (score {score:.4f}, torch {reference:.4f}, threshold {cases.threshold:.4f})"
            break
        if score_errors[-1] > limit:
            problem = f"score error {score_errors[-1] * 100:.3f}% of the threshold on {name} (limit {limit * 100:g}%)"
            break
        if map_errors[-1] > limit:
            problem = f"anomaly-map error {map_errors[-1] * 100:.3f}% of the threshold on {name} (limit {limit * 100:g}%)"
            break
    worst_score, worst_map = float(max(score_errors, default=float("nan"))), float(max(map_errors, default=float("nan")))
    return SelfTestResult(requested, executed, ran, worst_score, worst_map, flips, limit, problem,
                          time.perf_counter() - start)
