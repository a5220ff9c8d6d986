"""The station's configuration: one TOML file, parsed into typed dataclasses and validated
before anything starts. Every error names the file, the key and the fix; ``inspectd run``
and ``inspectd check`` exit with status 78 (EX_CONFIG) on it, which the unit does not restart.

See systemd/inspectd.toml for an example with every key.
"""

from __future__ import annotations

import sys
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from inspectd.daemon.errors import ConfigError

DEFAULT_PATH = Path("/etc/inspectd/inspectd.toml")


@dataclass
class ModelConfig:
    path: str = "/var/lib/inspectd/model"
    device: str = "CPU"
    threshold: float | None = None  # override of the model folder's threshold, raw score units
    precision: str = "auto"  # auto | f32 | bf16 | f16: only precisions the export verified


@dataclass
class SourceConfig:
    kind: str = "picamera2"  # picamera2 | opencv | directory
    path: str = ""  # directory: the folder
    mode: str = "once"  # directory: once | loop | watch
    device: str = "0"  # opencv: device index, /dev/videoN, rtsp://, http://, or a video file
    width: int = 1536  # picamera2 / opencv capture size
    height: int = 864
    settle_ms: int = 1500  # picamera2: auto exposure/white balance settle, then locked
    roi: list[int] | None = None  # [x, y, width, height] crop applied to every frame
    retry_max_s: float = 30.0  # longest wait between reconnect attempts after a source fault


@dataclass
class TriggerConfig:
    kind: str = "continuous"  # continuous | interval | gpio
    interval_ms: float = 1000.0
    line: str = ""  # gpio: part-present sensor input line (name or offset)
    active_low: bool = False
    bias: str = "disabled"  # disabled | pull-up | pull-down | as-is
    debounce_ms: float = 20.0


@dataclass
class DecisionConfig:
    min_defect_area: int = 0  # pixels of the frame's anomaly map above pixel_threshold; 0 = off
    pixel_threshold: float | None = None  # default: the image threshold
    confirm: list[int] | None = None  # [N, M]: REJECT only when N of the last M frames are anomalous


@dataclass
class JournalConfig:
    enabled: bool = True
    log: str = "all"  # all | rejects (plus a summary every summary_interval_s)
    summary_interval_s: float = 60.0


@dataclass
class RejectLineConfig:
    line: str = ""
    active_low: bool = False
    pulse_ms: float = 100.0


@dataclass
class ReadyLineConfig:
    line: str = ""
    active_low: bool = False
    period_ms: float = 500.0


@dataclass
class GpioConfig:
    chip: str = "pinctrl-rp1"  # name (gpiochip0), path or label; "memory" for a dry run
    reject: RejectLineConfig = field(default_factory=RejectLineConfig)
    ready: ReadyLineConfig = field(default_factory=ReadyLineConfig)


@dataclass
class ArchiveConfig:
    enabled: bool = True
    path: str = "/var/lib/inspectd/rejects"
    max_mb: float = 500.0
    pass_sample_every: int = 0  # also keep every Nth PASS frame; 0 = rejects only


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    gpio: GpioConfig | None = None  # absent: no GPIO at all
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    file: str = ""  # where it was read from, for messages


CHOICES = {
    "model.precision": ("auto", "f32", "bf16", "f16"),
    "source.kind": ("picamera2", "opencv", "directory"),
    "source.mode": ("once", "loop", "watch"),
    "trigger.kind": ("continuous", "interval", "gpio"),
    "trigger.bias": ("disabled", "pull-up", "pull-down", "as-is"),
    "journal.log": ("all", "rejects"),
}


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found; copy systemd/inspectd.toml there and edit it, or pass --config FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    config = _build(Config, data, path, "")
    config.file = str(path)
    validate(config, path)
    return config


def _build(cls: type, data: object, path: Path, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [{where}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.name != "file"}
    values = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in known:
            raise ConfigError(f"{path}: unknown key '{name}'; valid keys here: {', '.join(known)}")
        values[key] = _convert(hints[key], value, path, name)
    for key, spec in known.items():
        if key not in values and spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError(f"{path}: missing key '{where}.{key}'")
    return cls(**values)


def _convert(hint, value, path: Path, name: str):
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None):
            continue
        if isinstance(option, type) and hasattr(option, "__dataclass_fields__"):
            return _build(option, value, path, name)
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        base = typing.get_origin(option) or option
        if isinstance(value, base) and not (isinstance(value, bool) and base is not bool):
            if base is list and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                break
            return value
    wanted = " or ".join(_describe(o) for o in options if o is not type(None))
    raise ConfigError(f"{path}: key '{name}' must be {wanted}, got {value!r}")


def _describe(hint) -> str:
    if typing.get_origin(hint) is list:
        return "a list of integers"
    if hasattr(hint, "__dataclass_fields__"):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(hint, str(hint))


def validate(config: Config, path: Path) -> None:
    def fail(key: str, problem: str) -> None:
        raise ConfigError(f"{path}: key '{key}' {problem}")

    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            fail(key, f"is {value!r}; use one of: {', '.join(allowed)}")
    source, trigger, decision = config.source, config.trigger, config.decision
    if source.kind == "directory" and not source.path:
        fail("source.path", "is required for a directory source: the folder of images to replay or watch")
    if source.kind == "directory" and not Path(source.path).is_dir():
        fail("source.path", f"'{source.path}' is not a folder; create it or point to the images")
    if source.width <= 0 or source.height <= 0:
        fail("source.width", "and source.height must be positive")
    if source.roi is not None and (len(source.roi) != 4 or source.roi[2] <= 0 or source.roi[3] <= 0 or min(source.roi[:2]) < 0):
        fail("source.roi", f"must be [x, y, width, height] with positive size, got {source.roi}")
    if source.retry_max_s <= 0:
        fail("source.retry_max_s", "must be positive")
    if trigger.kind == "interval" and trigger.interval_ms <= 0:
        fail("trigger.interval_ms", "must be positive")
    if trigger.kind == "gpio":
        if config.gpio is None:
            fail("trigger.kind", "is 'gpio' but there is no [gpio] table naming the chip")
        if not trigger.line:
            fail("trigger.line", "is required for a gpio trigger: the part-present sensor's line name or offset")
    if trigger.debounce_ms < 0:
        fail("trigger.debounce_ms", "must not be negative")
    if decision.min_defect_area < 0:
        fail("decision.min_defect_area", "must not be negative")
    if decision.confirm is not None:
        if len(decision.confirm) != 2 or not 1 <= decision.confirm[0] <= decision.confirm[1]:
            fail("decision.confirm", f"must be [N, M] with 1 <= N <= M, got {decision.confirm}")
        if trigger.kind != "continuous":
            fail("decision.confirm", "only makes sense with trigger.kind = 'continuous' (one frame per part otherwise)")
    if config.model.threshold is not None and not config.model.threshold > 0:
        fail("model.threshold", "must be a positive raw PaDiM score (see the model's inspectd.json)")
    if config.journal.summary_interval_s <= 0:
        fail("journal.summary_interval_s", "must be positive")
    if config.gpio is not None:
        if config.gpio.reject.line and config.gpio.reject.pulse_ms <= 0:
            fail("gpio.reject.pulse_ms", "must be positive")
        if config.gpio.ready.line and config.gpio.ready.period_ms <= 0:
            fail("gpio.ready.period_ms", "must be positive")
    if config.archive.max_mb <= 0:
        fail("archive.max_mb", "must be positive")
    if config.archive.pass_sample_every < 0:
        fail("archive.pass_sample_every", "must not be negative")
