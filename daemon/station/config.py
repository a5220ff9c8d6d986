"""The station's configuration: one TOML file, parsed into typed sections and checked before
anything starts. Every error names the file, the key and the fix; ``inspectd run`` and
``inspectd check`` exit with status 78 (EX_CONFIG) on it, which the unit does not restart.

Each table is a section class next to the part it configures: ``[source]`` and ``[trigger]``
are chosen by ``kind`` from the SOURCES and TRIGGERS registries, ``[journal]`` and ``[archive]``
live with their outputs, ``[gpio.reject]`` with the reject output, ``[gpio.ready]`` with the
station's health. See systemd/inspectd.toml for an example with every key.

    >>> config = load("systemd/inspectd.toml")                      # doctest: +SKIP
    >>> config.source.kind, config.source.width, config.trigger     # doctest: +SKIP
    ('picamera2', 1536, ContinuousConfig())
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.runtime.model import PRECISIONS
from inspectd.daemon.station.health import ReadyLineConfig
from inspectd.daemon.station.outputs.archive import ArchiveConfig
from inspectd.daemon.station.outputs.interface import OutputConfig
from inspectd.daemon.station.outputs.journal import JournalConfig
from inspectd.daemon.station.outputs.reject import RejectLineConfig
from inspectd.daemon.station.settings import Section, internal, parse, setting
from inspectd.daemon.station.sources import SOURCES, SourceConfig
from inspectd.daemon.station.triggers import TRIGGERS, TriggerConfig

DEFAULT_PATH = Path("/etc/inspectd/inspectd.toml")
THRESHOLD_FIX = "a raw PaDiM score (see the model folder's inspectd.json, threshold.value)"

__all__ = ["DEFAULT_PATH", "ArchiveConfig", "Config", "DecisionConfig", "GpioConfig", "JournalConfig", "ModelConfig",
           "ReadyLineConfig", "RejectLineConfig", "load"]


@dataclass
class ModelConfig(Section):
    path: str = "/var/lib/inspectd/model"
    device: str = "CPU"
    threshold: float | None = setting(None, above=0, fix=THRESHOLD_FIX)  # override of the model folder's threshold
    precision: str = setting("auto", choices=("auto", *PRECISIONS))  # only precisions that pass the self-test here are used


@dataclass
class DecisionConfig(Section):
    min_defect_area: int = setting(0, minimum=0, fix="pixels of the frame above pixel_threshold needed to reject; 0 = off")
    pixel_threshold: float | None = setting(None, above=0, fix=THRESHOLD_FIX)  # default: the image threshold
    confirm: list[int] | None = None  # [N, M]: REJECT only when N of the last M frames are anomalous

    def check(self) -> None:
        if self.confirm is not None and (len(self.confirm) != 2 or not 1 <= self.confirm[0] <= self.confirm[1]):
            raise ConfigError(f"must be [N, M] with 1 <= N <= M, got {self.confirm}", key="confirm", fix="e.g. confirm = [2, 3]")


@dataclass
class GpioConfig(Section):
    chip: str = "pinctrl-rp1"  # name (gpiochip0), path or label; "memory" for a dry run
    reject: RejectLineConfig = field(default_factory=RejectLineConfig)
    ready: ReadyLineConfig = field(default_factory=ReadyLineConfig)


@dataclass
class Config(Section):
    model: ModelConfig = field(default_factory=ModelConfig)
    source: SourceConfig = SOURCES.field()
    trigger: TriggerConfig = TRIGGERS.field()
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    gpio: GpioConfig | None = None  # absent: no GPIO at all
    file: str = internal("")  # where it was read from, for messages

    def check(self) -> None:
        self._check_lines_are_distinct()
        if self.trigger.needs_gpio and self.gpio is None:
            raise ConfigError(f"is {self.trigger.kind!r} but there is no [gpio] table naming the chip", key="trigger.kind",
                              fix='add [gpio] with chip = "pinctrl-rp1" (`inspectd doctor` lists the chips)')
        if self.decision.confirm is not None and not self.trigger.streams:
            streaming = [name for name in TRIGGERS.names() if TRIGGERS.get(name).streams]
            raise ConfigError(f"needs consecutive frames of the same part, and a {self.trigger.kind} trigger takes one per part",
                              key="decision.confirm", fix=f"remove it, or use trigger kind {' or '.join(map(repr, streaming))}")

    def _check_lines_are_distinct(self) -> None:
        """A line can be requested once: a second use is a mistake in this file, so say so here, not at start."""
        used = [("gpio.reject.line", self.gpio.reject.line), ("gpio.ready.line", self.gpio.ready.line)] if self.gpio else []
        used.append(("trigger.line", getattr(self.trigger, "line", "")))
        seen: dict[str | int, str] = {}
        for key, line in used:
            if not line:
                continue
            line_id = int(line) if line.strip().isdigit() else line.strip()
            if line_id in seen:
                raise ConfigError(f"{line!r} is already {seen[line_id]}", key=key, fix="each line can be used once: choose another line")
            seen[line_id] = key

    @property
    def outputs(self) -> list[OutputConfig]:
        """The software outputs' sections in fan-out order: the archive names the file before the journal records it."""
        return [self.archive, self.journal]

    @property
    def frames_on_demand(self) -> bool:
        """Frames come only when a part does (a GPIO trigger, a watched folder): an idle line sends none."""
        return self.trigger.frames_on_demand or self.source.frames_on_demand


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("configuration file not found", file=path,
                          fix="copy systemd/inspectd.toml there and edit it, or pass --config FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read ({getattr(exc, 'strerror', None) or exc})", file=path, fix="check its permissions") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", file=path, fix="fix the syntax") from None
    config = parse(Config, data, file=path)
    config.file = str(path)
    return config
