"""What a reload may replace freely: the model, the decision and the software outputs, and the
one station cycle they make for a frame (infer, decide, the verdict record)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from inspectd.daemon.errors import ConfigError, InspectdError
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.station.config import Config
from inspectd.daemon.station.decision import Decision
from inspectd.daemon.station.outputs import EventKind, Fanout, Output
from inspectd.daemon.station.settings import located
from inspectd.daemon.station.sources import Frame
from inspectd.daemon.station.verdict import FrameVerdict


@dataclass
class Pipeline:
    config: Config
    model: Model
    decision: Decision
    outputs: list[Output]  # opened here, closed here: the archive and the journal
    closed: bool = field(default=False, repr=False)

    def inspect(self, frame: Frame, number: int) -> FrameVerdict:
        """Frame ``number``'s verdict; raises InspectdError when the model cannot score it."""
        start = time.perf_counter()
        inspection = self.model.infer(frame.pixels, frame.name)
        verdict, area = self.decision(inspection)
        return FrameVerdict(
            frame=number, source=frame.name, verdict=verdict, score=inspection.score, threshold=self.decision.threshold,
            latency_ms=(time.perf_counter() - start) * 1000.0, model_id=self.model.model_id, defect_area=area,
            inspection=inspection, pixels=frame.pixels,
        )

    def announce(self, outputs: Fanout, kind: EventKind, message: str) -> None:
        """The start or reload record, naming the model and its precision; then why a faster precision failed, if one did."""
        model = self.model
        outputs.event(kind, message, model=model.model_id, precision=model.precision)
        if model.fallback:
            failed = ", ".join(trial.requested for trial in model.trials if not trial.passed)
            outputs.event(EventKind.PRECISION, f"{model.folder.path}: {model.fallback}", failed=failed, precision=model.precision)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for output in self.outputs:
            output.close()


def build_pipeline(config: Config, on_fault: Callable[[str], None]) -> Pipeline:
    """Loads and self-tests the model (any problem with it is a configuration error: exit 78), opens the outputs."""
    try:
        model = Model.load(config.model.path, config.model.device, config.model.precision)
    except ConfigError as error:
        raise located(error, config.file) from None
    except InspectdError as error:
        raise ConfigError(str(error), file=config.file, key="model.path") from None
    threshold = config.model.threshold if config.model.threshold is not None else model.threshold
    outputs: list[Output] = []
    try:
        for section in config.outputs:
            if section.enabled:
                outputs.append(section.open(on_fault))
    except BaseException as error:
        for output in outputs:
            output.close()
        if isinstance(error, InspectdError):
            raise located(error, config.file) from None
        raise
    return Pipeline(config, model, Decision(threshold, config.decision), outputs)
