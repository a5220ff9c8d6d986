"""The runtime model: a model folder compiled with OpenVINO, turning a frame into a verdict.

    >>> model = Model.load("models/demo-mug")                     # doctest: +SKIP
    >>> result = model.infer(read_image("part.png"))              # doctest: +SKIP
    >>> print(result.score, result.threshold, result.anomalous)   # doctest: +SKIP
    >>> heat = result.anomaly_map()    # same height x width as the frame  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import InspectdError
from .model_folder import ModelFolder, read_model_folder
from .preprocess import check_frame, model_region, prepare


@dataclass
class Inspection:
    """One frame's result. ``score`` and ``threshold`` are raw PaDiM scores (same units)."""

    score: float
    threshold: float
    anomalous: bool
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


# What the device must offer (OpenVINO OPTIMIZATION_CAPABILITIES) for a precision to be worth using.
NATIVE_SUPPORT = {"bf16": "BF16", "f16": "FP16"}


class Model:
    """A compiled model folder. Not thread-safe: use one per inspection loop.

    Precision: "auto" takes the fastest precision the export verified against the torch model
    that the device runs natively (bf16 on recent x86, f16 on ARM where it verified), else
    f32. OpenVINO's own default (f16 on ARM, bf16 on recent x86) is never used unverified:
    PaDiM's squared distances overflow f16 on some backbones and every part would be rejected.
    """

    def __init__(self, folder: ModelFolder, device: str = "CPU", precision: str = "auto") -> None:
        import openvino as ov  # lazy: keeps `inspectd --help` fast

        self.folder = folder
        self.threshold = folder.threshold.value
        spec = folder.preprocessing
        core = ov.Core()
        try:
            graph = core.read_model(str(folder.xml_path))
        except RuntimeError as exc:
            raise InspectdError(f"{folder.xml_path}: OpenVINO cannot read it ({str(exc).splitlines()[0]}); re-export the model folder") from None
        expected = [1, spec.input_height, spec.input_width, 3]
        if len(graph.inputs) != 1 or graph.input(0).get_partial_shape() != ov.PartialShape(expected):
            raise InspectdError(
                f"{folder.xml_path}: graph input is {graph.input(0).get_partial_shape()} but inspectd.json says "
                f"{expected}; the files come from different exports, copy the whole folder again"
            )
        names = {name for output in graph.outputs for name in output.get_names()}
        for name in (folder.map_output, folder.score_output):
            if name not in names:
                raise InspectdError(f"{folder.xml_path}: has no output '{name}' named in inspectd.json outputs; re-export the model folder")
        self.precision = self._choose_precision(core, device, precision)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.precision}
        self.compiled = core.compile_model(graph, device, config)
        self.request = self.compiled.create_infer_request()
        self.map_port = self.compiled.output(folder.map_output)
        self.score_port = self.compiled.output(folder.score_output)

    def _choose_precision(self, core, device: str, precision: str) -> str:
        verified = self.folder.verified_precisions
        if precision != "auto":
            if precision not in verified:
                raise InspectdError(
                    f"model.precision '{precision}' was not verified for {self.folder.path} (verified: {', '.join(verified)}); "
                    f"use 'auto' or one of those"
                )
            return precision
        capabilities = set(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
        for candidate in verified:
            if candidate == "f32" or NATIVE_SUPPORT.get(candidate) in capabilities:
                return candidate
        return self.folder.inference_precision

    @classmethod
    def load(cls, path: str | Path, device: str = "CPU", precision: str = "auto") -> Model:
        return cls(read_model_folder(path), device, precision)

    @property
    def model_id(self) -> str:
        """sha256 of model.bin: what journald records as INSPECTD_MODEL."""
        return self.folder.model_sha256

    def infer(self, frame: np.ndarray, name: str = "frame") -> Inspection:
        """Score one BGR uint8 frame of any size."""
        check_frame(frame, name)
        start = time.perf_counter()
        spec = self.folder.preprocessing
        outputs = self.request.infer({0: prepare(frame, spec)})
        score = float(np.asarray(outputs[self.score_port]).reshape(-1)[0])
        model_map = np.asarray(outputs[self.map_port]).reshape(spec.input_height, spec.input_width).copy()
        latency_ms = (time.perf_counter() - start) * 1000.0
        if not np.isfinite(score):
            # Never let a NaN compare as "not above threshold" and pass a part.
            raise InspectdError(f"{name}: the model produced a non-finite score ({score}); check the model folder with 'inspectd infer'")
        return Inspection(
            score=score,
            threshold=self.threshold,
            anomalous=bool(score > self.threshold),
            latency_ms=latency_ms,
            model_map=model_map,
            frame_size=(frame.shape[0], frame.shape[1]),
            region=model_region(frame.shape[0], frame.shape[1], spec),
        )
