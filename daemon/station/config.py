"""The station's configuration: one TOML file, parsed into typed sections and checked before
anything starts. Every error names the file, the key and the fix; ``inspectd run`` and
``inspectd check`` exit with status 78 (EX_CONFIG) on it, which the unit does not restart.

Each table is a section class next to the part it configures: ``[source]`` and ``[trigger]``
are chosen by ``kind`` from the SOURCES and TRIGGERS registries, ``[journal]`` and ``[archive]``
live with their outputs, ``[gpio.reject]`` with the reject output, ``[gpio.ready]`` with the
station's health, ``[drift]`` with the drift watch. See systemd/inspectd.toml for an example with every key.

    >>> config = load("systemd/inspectd.toml")                      # doctest: +SKIP
    >>> config.source.kind, config.source.width, config.trigger     # doctest: +SKIP
    ('picamera2', 1536, ContinuousConfig())
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.gpio.reservations import Reservations, configured_line
from inspectd.daemon.runtime.decision import Rule
from inspectd.daemon.runtime.model import PRECISIONS
from inspectd.daemon.station.drift import DriftConfig
from inspectd.daemon.station.health import ReadyLineConfig
from inspectd.daemon.station.outputs.archive import ArchiveConfig
from inspectd.daemon.station.outputs.interface import OutputConfig
from inspectd.daemon.station.outputs.journal import JournalConfig
from inspectd.daemon.station.outputs.live import LiveConfig
from inspectd.daemon.station.outputs.reject import RejectLineConfig
from inspectd.daemon.station.paths import DEFAULT_PATH
from inspectd.daemon.station.settings import Section, collect, distinct, internal, located, raise_all, read_toml, setting
from inspectd.daemon.station.sources import SOURCES, DirectoryConfig, SourceConfig
from inspectd.daemon.station.triggers import TRIGGERS, TriggerConfig

THRESHOLD_FIX = "a raw PaDiM score (see the model folder's inspectd.json, threshold.value)"
CONFIRM_MAX = 1000  # frames in decision.confirm's window: 50 s of one part at 20 Hz; a bigger N never rejects in practice
THRESHOLD_RANGE = 10  # a threshold this many times off the model folder's rejects almost every part, or almost none
OWN_FOLDERS = {"archive.path": "give the archive a folder of its own, e.g. /var/lib/inspectd/rejects",
               "live.path": 'give the live tap a folder of its own: "" (/run/inspectd/live under the unit)'}

__all__ = ["DEFAULT_PATH", "ArchiveConfig", "Config", "DecisionConfig", "DriftConfig", "GpioConfig", "JournalConfig", "LiveConfig", "ModelConfig",
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
        if self.confirm is not None and (len(self.confirm) != 2 or not 1 <= self.confirm[0] <= self.confirm[1] <= CONFIRM_MAX):
            raise ConfigError(f"must be [N, M] with 1 <= N <= M <= {CONFIRM_MAX}, got {self.confirm}", key="confirm",
                              fix="e.g. confirm = [2, 3]: N anomalous frames among the part's last M")


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
    # The software outputs, one line each: a new output is its module (outputs/) and its line here. They receive
    # verdicts in this order: the archive names the file before the journal records it.
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    live: LiveConfig = field(default_factory=LiveConfig)  # the latest frame for the station page (inspectd web)
    drift: DriftConfig = field(default_factory=DriftConfig)
    gpio: GpioConfig | None = None  # absent: no GPIO at all
    file: str = internal("")  # where it was read from, for messages

    def check(self) -> None:
        """The rules across tables, each judged on its own so that all of them are reported at once."""
        rules = (self._lines_are_distinct, self._trigger_has_a_chip, self._confirm_has_a_stream, self._area_fits_a_frame,
                 self._roi_fits_the_camera, self.archive_is_its_own)
        raise_all([error for rule in rules for error in rule()])

    def gpio_lines(self) -> list[tuple[str, str]]:
        """Every GPIO line this station takes, with its key: the one list that check, start and doctor read. Each part
        says which lines it takes (its ``lines()``); an empty line is no line."""
        parts = [("gpio.reject", self.gpio.reject), ("gpio.ready", self.gpio.ready)] if self.gpio else []
        parts.append(("trigger", self.trigger))
        return [(f"{table}.{name}", line) for table, part in parts for name, line in part.lines().items() if line]

    def _lines_are_distinct(self) -> list[ConfigError]:
        """A line can be requested once: a second use is a mistake in this file, so say so here, not at start."""
        reservations, errors = Reservations(), []
        for key, line in self.gpio_lines():
            if line.strip() and (holder := reservations.reserve(configured_line(line), key)) is not None:
                errors.append(ConfigError(f"{line!r} is already {holder}", key=key, fix="each line can be used once: choose another line"))
        return errors

    def _trigger_has_a_chip(self) -> list[ConfigError]:
        if self.trigger.needs_gpio and self.gpio is None:
            return [ConfigError(f"is {self.trigger.kind!r} but there is no [gpio] table naming the chip", key="trigger.kind",
                                fix='add [gpio] with chip = "pinctrl-rp1" (`inspectd doctor` lists the chips)')]
        return []

    def _confirm_has_a_stream(self) -> list[ConfigError]:
        if self.decision.confirm is not None and not self.trigger.streams:
            streaming = [name for name in TRIGGERS.names() if TRIGGERS.get(name).streams]
            kind = self.trigger.kind
            return [ConfigError(f"needs consecutive frames of the same part, and a{'n' * (kind[0] in 'aeiou')} {kind} trigger takes "
                                "one per part",
                                key="decision.confirm", fix=f"remove it, or use trigger kind {' or '.join(map(repr, streaming))}")]
        return []

    def _area_fits_a_frame(self) -> list[ConfigError]:
        """A minimum defect area larger than any frame rejects nothing, ever."""
        most, why = self.source.most_pixels()
        if self.decision.min_defect_area > most:
            return [ConfigError(f"{self.decision.min_defect_area} pixels is more than a frame has ({most}, {why}): no part would ever "
                                "be rejected", key="decision.min_defect_area",
                                fix=f"a defect area in pixels of the frame, at most {most}; 0 = off")]
        return []

    def _roi_fits_the_camera(self) -> list[ConfigError]:
        """A camera's frame size is known before it is opened: the ROI must fit in it (a folder's frames are checked by `check`)."""
        return self.source.roi_errors()

    def archive_is_its_own(self) -> list[ConfigError]:
        """The archive deletes its oldest files to keep within its quota, the live tap its older frames: each folder
        must not be, hold or lie inside anything the station reads (the model folder, the configuration file, a
        source's folder or file), nor the other's."""
        errors = self._folder_is_its_own("archive.path", self.archive.path if self.archive.enabled else "",
                                         "the archive deletes its oldest files to keep within archive.max_mb")
        live = self.live.path if self.live.enabled and self.live.rate_hz else ""
        errors += self._folder_is_its_own("live.path", live, "the live tap writes and deletes its frames there",
                                          [("archive.path", "the archive folder", self.archive.path if self.archive.enabled else "")])
        return errors

    def _folder_is_its_own(self, key: str, folder: str, why: str, others: list[tuple[str, str, str]] | None = None) -> list[ConfigError]:
        if not folder:
            return []
        read = [("model.path", "the model folder", self.model.path)]
        if self.file:
            read.append(("", "this configuration file", self.file))
        source = self.source
        if isinstance(source, DirectoryConfig) and source.path:
            read.append(("source.path", "the source folder", source.path))
        device = getattr(source, "device", "")
        if isinstance(device, str) and device and "://" not in device and not device.isdigit():
            read.append(("source.device", "the source file", device))
        errors = []
        for name, what, path in read + (others or []):
            relation = overlap(Path(folder), Path(path)) if path.strip() else ""
            if relation:
                errors.append(ConfigError(f"'{folder}' {relation} {what} {name + ' ' if name else ''}'{path}': {why}", key=key,
                                          fix=OWN_FOLDERS[key]))
        return errors

    def rule(self, folder_threshold: float) -> Rule:
        """The decision rule this station applies with a model folder whose threshold is ``folder_threshold``: the one
        place ``[model] threshold`` and ``[decision]`` become a rule (the station, check, evaluate and calibrate). Each key
        of ``[decision]`` is the rule's field of the same name: a new rule setting is a field of both."""
        decision = {spec.name: getattr(self.decision, spec.name) for spec in fields(self.decision)}
        return Rule(threshold=self.model.threshold if self.model.threshold is not None else folder_threshold,
                    **{name: tuple(value) if isinstance(value, list) else value for name, value in decision.items()})

    @property
    def outputs(self) -> list[OutputConfig]:
        """The software outputs' sections, in fan-out order (their order above)."""
        return [value for spec in fields(self) if isinstance(value := getattr(self, spec.name), OutputConfig)]

    @property
    def frames_on_demand(self) -> bool:
        """Frames come only when a part does (a GPIO trigger, a watched folder): an idle line sends none."""
        return self.trigger.frames_on_demand or self.source.frames_on_demand


def overlap(archive: Path, other: Path) -> str:
    """How ``archive`` overlaps ``other``: "is", "lies inside", "holds"; "" when apart. By real path (symlinks followed)
    and by identity (a bind mount of the same folder), for the parts that exist."""
    try:
        mine, theirs = Path(os.path.realpath(archive)), Path(os.path.realpath(other))
    except (OSError, ValueError):
        return ""
    if mine == theirs or _same(mine, theirs):
        return "is"
    if any(parent == theirs or _same(parent, theirs) for parent in mine.parents):
        return "lies inside"
    if any(parent == mine or _same(parent, mine) for parent in theirs.parents):
        return "holds"
    return ""


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def threshold_errors(config: Config, folder_threshold: float) -> list[ConfigError]:
    """``model.threshold`` and ``decision.pixel_threshold`` (same units: the score is the map's maximum) against the
    model folder's threshold: beyond THRESHOLD_RANGE times off, the station would be silently wrong."""
    low, high = folder_threshold / THRESHOLD_RANGE, folder_threshold * THRESHOLD_RANGE
    errors = []
    for key, value in (("model.threshold", config.model.threshold), ("decision.pixel_threshold", config.decision.pixel_threshold)):
        if value is not None and not low <= value <= high:
            effect = "almost no part" if value > high else "almost every part"
            errors.append(ConfigError(f"{value:g} is more than {THRESHOLD_RANGE} times off the model folder's threshold "
                                      f"{folder_threshold:.4g}: {effect} would be rejected", file=config.file, key=key,
                                      fix=f"a raw score between {low:.4g} and {high:.4g}, or remove it to use the folder's"))
    return errors


def read(path: str | Path) -> tuple[Config | None, list[ConfigError]]:
    """The configuration and every problem in it. Bad keys keep their defaults in the Config returned, so the
    parts that do not depend on them can still be checked (``inspectd check``); None when the file is not TOML."""
    path = Path(path)
    data, errors = read_toml(path, missing_fix="copy systemd/inspectd.toml there and edit it, or pass --config FILE",
                             refused_fix="pass the station's TOML file with --config FILE")
    if data is None:
        return None, errors
    config, errors = collect(Config, data, file=path)
    config.file = str(path)
    errors = distinct(errors + [located(error, path) for error in config.archive_is_its_own()])  # now with the file itself
    return config, errors


def load(path: str | Path) -> Config:
    """The configuration, or every problem in it raised at once (ConfigError, or ConfigErrors for several)."""
    config, errors = read(path)
    raise_all(errors)
    assert config is not None
    return config
