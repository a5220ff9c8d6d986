"""The runtime model: a model folder compiled with OpenVINO, turning a frame into a verdict.

    >>> model = Model.load("models/demo-mug")                     # doctest: +SKIP
    >>> result = model.infer(read_image("part.png"))              # doctest: +SKIP
    >>> heat = result.anomaly_map()    # same height x width as the frame  # doctest: +SKIP
    >>> model.rule().judge()(result.score, heat).verdict          # doctest: +SKIP
    <Verdict.PASS: 'PASS'>

The model scores; the verdict is the decision rule's (``runtime.decision``), here the folder's own.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspectd.daemon.errors import InspectdError, ModelDoesNotFit, ModelFolderError
from inspectd.daemon.schema import METADATA_FILE, ModelFolder, ModelMetadata, read_model_folder
from inspectd.daemon.runtime.decision import Rule
from inspectd.daemon.runtime.openvino_import import import_openvino
from inspectd.daemon.runtime.preprocess import model_region, prepare
from inspectd.daemon.runtime.selftest import SelfTestResult, load_cases, run_self_test
from inspectd.daemon.runtime.selftest_memory import SelfTestMemory, memory_key


@dataclass
class Inspection:
    """One frame's score and map; the verdict is the decision rule's (``runtime.decision``). ``score`` is the raw PaDiM score."""

    score: float
    latency_ms: float  # pre-processing + inference, frame already in memory
    model_map: np.ndarray = field(repr=False)  # anomaly map at the model's input resolution
    frame_size: tuple[int, int]  # (height, width)
    region: tuple[float, float, float, float]  # part of the frame the model saw: top, left, bottom, right

    def anomaly_map(self) -> np.ndarray:
        """The anomaly map at the frame's own resolution (0 outside a centre crop)."""
        height, width = self.frame_size
        top, left, bottom, right = self.region
        if (top, left, bottom, right) == (0.0, 0.0, float(height), float(width)):
            return cv2.resize(self.model_map, (width, height), interpolation=cv2.INTER_LINEAR)
        full = np.zeros((height, width), dtype=np.float32)
        y0, x0, y1, x1 = int(round(top)), int(round(left)), int(round(bottom)), int(round(right))
        full[y0:y1, x0:x1] = cv2.resize(self.model_map, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        return full


@dataclass(frozen=True)
class Prepared:
    """A frame made into the graph's input (``Model.prepare``), with what its Inspection needs of the frame."""

    name: str
    tensor: np.ndarray = field(repr=False)  # (1, H, W, 3) float32
    frame_size: tuple[int, int]  # (height, width)
    region: tuple[float, float, float, float]
    milliseconds: float  # the pre-processing's time, counted in the Inspection's latency


PRECISIONS = ("bf16", "f16", "f32")  # fastest first
# What the device must offer (OpenVINO OPTIMIZATION_CAPABILITIES) to run a precision natively.
NATIVE_SUPPORT = {"bf16": "BF16", "f16": "FP16"}


def compile_config(precision: str) -> dict[str, str]:
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}


def self_test_every_precision(folder: ModelFolder, device: str = "CPU") -> list[SelfTestResult]:
    """The folder's self-test at bf16, f16 and f32 in turn, as ``inspectd doctor`` shows it (no fallback, nothing kept).

    Each result says what the device really ran (``executed``): an x86 CPU without bf16/f16 runs them as f32.
    """
    ov = import_openvino()

    core = ov.Core()
    graph, weights = read_graph(core, folder)
    cases = load_cases(folder)
    outputs = folder.metadata.outputs
    results, by_executed = [], {}
    for precision in PRECISIONS:
        compiled = core.compile_model(graph, device, compile_config(precision))
        executed = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if executed in by_executed:  # bf16 on ARM, f16 on AVX2: the same kernels as a precision already tested
            results.append(dataclasses.replace(by_executed[executed], requested=precision))
            continue
        by_executed[executed] = run_self_test(compiled, outputs.anomaly_map, outputs.score, cases, precision)
        results.append(by_executed[executed])
    del weights  # shared with the graph: kept until every compiled model is done
    return results


def read_graph(core, folder: ModelFolder):
    """The graph and the buffer of its weights (keep it as long as the graph or a model compiled from it lives).

    Read from the folder's bytes (``ModelFolder.contents``: read once, checked against their sha256), never from the
    files: OpenVINO would map model.bin into memory, and a file overwritten in place while the station runs (even by
    ``cp`` of the same bytes) would kill the process with SIGBUS.
    """
    ov = import_openvino()

    weights = folder.content("model.bin")
    if not isinstance(weights, bytearray):
        weights = bytearray(weights)  # OpenVINO shares only a writable buffer
    try:
        xml = bytes(folder.content("model.xml")).decode("utf-8")
        return core.read_model(model=xml, weights=ov.Tensor(np.frombuffer(weights, np.uint8), shared_memory=True)), weights
    except (RuntimeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"OpenVINO cannot read it ({str(exc).splitlines()[0]})", file=folder.xml_path,
                               fix="re-export the model folder") from None


class Model:
    """A compiled model folder. Not thread-safe: use one per inspection loop.

    Precision is chosen on this device, by its self-test: "auto" tries the reduced precisions
    the CPU runs natively (bf16 on recent x86, f16 on ARM: OpenVINO's defaults there), then
    f32; a named precision is tried first, then the ones after it. Each candidate is compiled
    and must pass the folder's self-test (no non-finite value, no verdict flip, error within
    the limit) before it is used; PaDiM's squared distances overflow f16 on some backbones,
    and an x86 export cannot see that. ``trials`` holds every self-test that ran, and
    ``fallback`` says why a faster precision was not used. If f32 fails too the folder does
    not fit this device: ModelDoesNotFit (exit 78).

    With a ``memory`` (``selftest_memory``; the station and the CLI pass the state directory's), an outcome
    remembered for exactly this folder, device, OpenVINO build, precision and self-test rule is not replayed:
    a remembered failure is not compiled again (unless it is the last candidate: a folder is refused only on
    a fresh self-test), a remembered pass is used once the compiled model executes the remembered precision.
    Without one (the default; ``inspectd doctor``, export) every self-test runs.

    A folder whose metadata is a Draft (``inspectd export`` still making it: no threshold or
    self-test yet) is compiled at the named precision as it is, untested; its threshold is NaN.
    """

    def __init__(self, folder: ModelFolder, device: str = "CPU", precision: str = "auto", memory: SelfTestMemory | None = None) -> None:
        ov = import_openvino()  # lazy: keeps `inspectd --help` fast

        self.folder = folder
        meta = folder.metadata
        self.threshold = meta.threshold.value if isinstance(meta, ModelMetadata) else math.nan
        spec = folder.preprocessing
        outputs = meta.outputs
        start = time.perf_counter()
        cases = load_cases(folder) if isinstance(meta, ModelMetadata) else None
        core = ov.Core()
        graph, self.weights = read_graph(core, folder)  # the weights' buffer lives as long as the model
        expected = [1, spec.input_height, spec.input_width, 3]
        if len(graph.inputs) != 1 or graph.input(0).get_partial_shape() != ov.PartialShape(expected):
            raise ModelFolderError(f"graph input is {graph.input(0).get_partial_shape()} but inspectd.json says {expected}",
                                   file=folder.xml_path, fix="the files come from different exports, copy the whole folder again")
        names = {name for output in graph.outputs for name in output.get_names()}
        for key, name in (("anomaly_map", outputs.anomaly_map), ("score", outputs.score)):
            if name not in names:
                raise ModelFolderError(f"names output '{name}', which model.xml does not have (it has {', '.join(sorted(names))})",
                                       file=folder.path / METADATA_FILE, key=f"outputs.{key}",
                                       fix="the files come from different exports, copy the whole folder again, or re-export it")
        self.device_name = core.get_property(device, "FULL_DEVICE_NAME")
        self.notes: list[str] = []  # precisions not tried, and why
        self.trials: list[SelfTestResult] = []
        self.timings = {"read_s": time.perf_counter() - start, "compile_s": 0.0, "self_test_s": 0.0}
        candidates = self._candidates(core, device, precision)
        capabilities = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
        for candidate in candidates:
            key = memory_key(folder, device, self.device_name, capabilities, ov.__version__, compile_config(candidate)) \
                if memory and cases else None
            remembered = memory.recall(key) if memory else None
            if remembered and not remembered.passed and candidate != candidates[-1]:
                self.trials.append(remembered)  # failed here before: not compiled again
                continue
            start = time.perf_counter()
            compiled = core.compile_model(graph, device, compile_config(candidate))
            self.timings["compile_s"] += time.perf_counter() - start
            executed = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            if cases is None:
                break
            if remembered and remembered.passed and remembered.executed == executed and remembered.frames == len(cases.names):
                result = remembered
            else:
                result = run_self_test(compiled, outputs.anomaly_map, outputs.score, cases, candidate)
                self.timings["self_test_s"] += result.seconds
                if memory:
                    memory.remember(key, result)
            self.trials.append(result)
            if result.passed:
                break
        else:
            tried = "; ".join(f"{t.requested}: {t.problem}{t.memory_note}" for t in self.trials)
            raise ModelDoesNotFit(
                f"{folder.path}: the model folder's self-test fails on this device at every precision ({tried}); the folder does not "
                f"fit {self.device_name} with OpenVINO {ov.__version__}: re-export it with this OpenVINO version, or run "
                f"'inspectd doctor' on this device"
            )
        if memory and memory.trouble:
            self.notes.append(f"self-test memory: {memory.trouble}; the self-test runs at every load")
        self.precision = executed  # what OpenVINO really runs, not what was asked
        self.compiled = compiled
        self.request = self.compiled.create_infer_request()
        self.map_port = self.compiled.output(outputs.anomaly_map)
        self.score_port = self.compiled.output(outputs.score)

    def _candidates(self, core, device: str, precision: str) -> list[str]:
        if precision != "auto" and precision not in PRECISIONS:
            raise InspectdError(f"model.precision '{precision}': use auto, {', '.join(PRECISIONS)}")
        meta = self.folder.metadata
        if not isinstance(meta, ModelMetadata):
            if precision == "auto":
                raise InspectdError(f"{self.folder.path}: has no self-test yet; name the precision to compile it untested")
            return [precision]
        capabilities = set(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
        first = PRECISIONS.index(precision) if precision != "auto" else 0
        candidates = []
        for candidate in PRECISIONS[first:]:
            if candidate == precision or candidate == "f32":
                candidates.append(candidate)
            elif NATIVE_SUPPORT[candidate] not in capabilities:
                self.notes.append(f"{candidate}: not native on this CPU, not tried")
            elif candidate in meta.runtime.refused_precisions and meta.runtime.checked_on.cpu == self.device_name:
                why = meta.runtime.precision_checks.get(candidate).why or "failed"
                self.notes.append(f"{candidate}: not tried, the export ran it on this CPU and refused it ({why})")
            else:
                candidates.append(candidate)
        return candidates

    @property
    def fallback(self) -> str | None:
        """Why the precision in use is not the first one tried; None when the first passed."""
        failed = [t for t in self.trials if not t.passed]
        if not failed:
            return None
        reasons = "; ".join(f"{t.requested} failed its self-test on this device: {t.problem}{t.memory_note}" for t in failed)
        chosen = self.trials[-1]
        if chosen.passed and chosen.remembered:
            reasons += f"; {chosen.requested} passed it{chosen.memory_note}"
        return f"{reasons}; running at {self.precision}"

    def precision_report(self) -> list[str]:
        """What the load decided, one line each: the self-tests that ran, what was not tried, the fallback."""
        lines = [trial.summary() for trial in self.trials] + list(self.notes)
        if self.fallback:
            lines.append(f"fallback: {self.fallback}")
        return lines

    @classmethod
    def load(cls, path: str | Path, device: str = "CPU", precision: str = "auto", memory: SelfTestMemory | None = None) -> Model:
        start = time.perf_counter()
        model = cls(read_model_folder(path), device, precision, memory)
        model.timings["folder_s"] = time.perf_counter() - start - sum(model.timings.values())  # read + sha256, before the rest
        return model

    def rule(self) -> Rule:
        """The folder's own decision rule: its threshold, nothing else (a station's configuration may add to it)."""
        return Rule(self.threshold)

    @property
    def color(self) -> str:
        """What the folder was trained on and takes: "rgb" or "gray"."""
        return self.folder.metadata.input.color

    @property
    def model_id(self) -> str:
        """sha256 of model.bin: what journald records as INSPECTD_MODEL."""
        return self.folder.metadata.files.model_bin.sha256

    def infer(self, frame: np.ndarray, name: str = "frame") -> Inspection:
        """Score one uint8 frame of any size, of the folder's colour mode (``color``): BGR, or gray (one channel or three equal).

        A frame of the other mode is a SourceError naming ``name`` (``runtime.colour``), never a score.
        """
        return self.score(self.prepare(frame, name))

    def prepare(self, frame: np.ndarray, name: str = "frame") -> Prepared:
        """The frame made into the graph's input (``infer``'s first half). Thread-safe: a reader may prepare the next
        frame while ``score`` runs this one."""
        start = time.perf_counter()
        spec = self.folder.preprocessing
        tensor = prepare(frame, spec, name)
        return Prepared(name, tensor, (frame.shape[0], frame.shape[1]), model_region(frame.shape[0], frame.shape[1], spec),
                        (time.perf_counter() - start) * 1000.0)

    def score(self, prepared: Prepared) -> Inspection:
        """A prepared frame through the compiled graph (``infer``'s second half)."""
        start = time.perf_counter()
        spec = self.folder.preprocessing
        outputs = self.request.infer({0: prepared.tensor})
        score = float(np.asarray(outputs[self.score_port]).reshape(-1)[0])
        model_map = np.asarray(outputs[self.map_port]).reshape(spec.input_height, spec.input_width).copy()
        latency_ms = prepared.milliseconds + (time.perf_counter() - start) * 1000.0
        if not np.isfinite(score):
            # Never let a NaN compare as "not above threshold" and pass a part.
            raise InspectdError(f"{prepared.name}: the model produced a non-finite score ({score}); check the model folder with 'inspectd infer'")
        return Inspection(score=score, latency_ms=latency_ms, model_map=model_map, frame_size=prepared.frame_size, region=prepared.region)
