"""What a reload may replace freely: the model, the decision and the software outputs, and the
one station cycle they make for a frame (infer, decide, the verdict record).

A reload keeps an output whose table did not change as it is (the archive's frames waiting to
be written, the journal's counts): only what changed is closed and opened again. The drift
watch is kept too when the model and ``[drift]`` did not change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from inspectd.daemon.errors import ConfigError, InspectdError
from inspectd.daemon.files import Claim, Held
from inspectd.daemon.runtime.decision import Judge, Rule
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.runtime.openvino_import import import_openvino
from inspectd.daemon.runtime.selftest_memory import SelfTestMemory
from inspectd.daemon.station.config import Config
from inspectd.daemon.station.drift import DriftWatch, drift_watch
from inspectd.daemon.station.outputs import EventKind, Fanout, Notice, Output, OutputConfig
from inspectd.daemon.station.settings import located
from inspectd.daemon.station.sources import Frame
from inspectd.daemon.station.verdict import FrameVerdict


@dataclass
class Pipeline:
    config: Config
    model: Model
    rule: Rule  # what the station decides with (config.rule): the folder's threshold or the override, area, confirmation
    judge: Judge  # the rule over this pipeline's frames (its confirmation window)
    outputs: list[Output]  # opened here (or kept from the pipeline a reload replaced), closed here: the archive and the journal
    sections: list[OutputConfig] = field(default_factory=list)  # the table each output was opened from
    drift: DriftWatch | None = None  # the PASS scores against the folder's normal scores; None: not watched
    drift_note: str = ""  # whether drift is watched, and why not (``inspectd check``)
    model_claim: Claim | None = field(default=None, repr=False)  # a shared lock on the model folder: who uses it (install-model)
    closed: bool = field(default=False, repr=False)

    def inspect(self, frame: Frame, number: int) -> FrameVerdict:
        """Frame ``number``'s verdict; raises when the model or the decision cannot judge it."""
        start = time.perf_counter()
        inspection = self.model.infer(frame.pixels, frame.name)
        decided = self.judge(inspection.score, inspection.anomaly_map)
        return FrameVerdict(
            frame=number, source=frame.name, verdict=decided.verdict, score=inspection.score, rule=self.rule,
            latency_ms=(time.perf_counter() - start) * 1000.0, model_id=self.model.model_id, precision=self.model.precision,
            defect_area=decided.defect_area, inspection=inspection, pixels=frame.pixels,
        )

    def announce(self, outputs: Fanout, kind: EventKind, message: str) -> None:
        """The start or reload record, naming the model and its precision; then why a faster precision failed, if one did."""
        model = self.model
        outputs.event(kind, message, model=model.model_id, precision=model.precision)
        if model.fallback:
            failed = ", ".join(trial.requested for trial in model.trials if not trial.passed)
            outputs.event(EventKind.PRECISION, f"{model.folder.path}: {model.fallback}", failed=failed, precision=model.precision)

    def start(self) -> None:
        """The outputs that work off the loop take their resources (the archive its folder)."""
        for output in self.outputs:
            if hasattr(output, "start"):
                output.start()

    def drain(self, deadline: float) -> None:
        """The outputs that work off the loop finish what they took, until ``deadline`` (time.monotonic())."""
        for output in self.outputs:
            if hasattr(output, "drain"):
                output.drain(deadline)

    def close(self, keep: Sequence[Output] = ()) -> list[Exception]:
        """Every output but those in ``keep`` (a reload's new pipeline took them); returns what failed to close."""
        if self.closed:
            return []
        self.closed = True
        if self.model_claim is not None:
            self.model_claim.release()
        failed = []
        for output in self.outputs:
            if any(output is kept for kept in keep):
                continue
            try:
                output.close()
            except Exception as exc:  # noqa: BLE001 - one output failing to close must not keep the others open
                failed.append(exc)
        return failed


def load_model(config: Config) -> Model:
    """The model as the station loads it, self-test included: a problem with the folder is a configuration error (exit 78)."""
    check_device(config)
    try:
        return Model.load(config.model.path, config.model.device, config.model.precision, SelfTestMemory.default())
    except ConfigError as error:
        raise located(error, config.file) from None
    except InspectdError as error:
        raise ConfigError(str(error), file=config.file, key="model.path") from None


def check_device(config: Config) -> None:
    """``model.device`` must be one OpenVINO has on this machine ("GPU" where there is none is not a crash later)."""
    ov = import_openvino()

    devices = list(ov.Core().available_devices)
    if config.model.device not in devices:
        raise ConfigError(f"{config.model.device!r} is not a device OpenVINO can use on this machine (it has {', '.join(devices) or 'none'})",
                          file=config.file, key="model.device", fix='use "CPU" (a Raspberry Pi infers on its CPU)')


def build_pipeline(config: Config, on_fault: Callable[[Notice], None], reuse: Pipeline | None = None,
                   model: Model | None = None) -> Pipeline:
    """Loads and self-tests the model unless ``model`` is it, loaded from this configuration (any problem with it is a
    configuration error: exit 78), opens the outputs, taking from ``reuse`` those whose table did not change."""
    model = model or load_model(config)
    rule = config.rule(model.threshold)
    kept = list(zip(reuse.sections, reuse.outputs)) if reuse is not None else []
    outputs: list[Output] = []
    sections: list[OutputConfig] = []
    opened: list[Output] = []
    try:
        for section in config.outputs:
            if not section.enabled:
                continue
            same = next((output for old, output in kept if type(old) is type(section) and old == section), None)
            if same is None:
                same = section.open(on_fault)
                opened.append(same)
            outputs.append(same)
            sections.append(section)
    except BaseException as error:
        for output in opened:
            output.close()
        if isinstance(error, InspectdError):
            raise located(error, config.file) from None
        raise
    drift, note = drift_watch(config.drift, getattr(model.folder.metadata, "normal_scores", None))
    if (reuse is not None and reuse.drift is not None and drift is not None and reuse.config.drift == config.drift
            and reuse.model.model_id == model.model_id
            and (reuse.drift.normal_mean, reuse.drift.normal_std) == (drift.normal_mean, drift.normal_std)):
        drift = reuse.drift  # the same model and [drift]: the window goes on, an alarm in progress stays one
    return Pipeline(config, model, rule, rule.judge(), outputs, sections, drift, note, model_claim=claim_model(model))


def claim_model(model: Model) -> Claim | None:
    """A shared lock on the folder the model was read from: ``inspectd install-model`` finds the stations to reload by it
    (any number of stations may share a model folder; nothing else is excluded)."""
    try:
        return Claim.take(model.folder.path, "the model folder", shared=True)
    except (OSError, Held):
        return None
