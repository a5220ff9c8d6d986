"""What the page needs to know about the station, read from the station's own configuration file.

The page reads a handful of keys with ``tomllib`` rather than through the station's loader: that
loader brings OpenCV and numpy (the station's parts and their checks), which would triple the
page's memory, and judging the station's file is ``inspectd check``'s job, not the page's. The
defaults below are the station's; tests/unit/test_web_config.py holds them equal to the station's
sections, so they cannot drift apart. A key of the wrong type keeps its default and is named in
``problems`` (the page shows them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from inspectd.daemon.files import read_small_file
from inspectd.daemon.station.settings import MAX_CONFIG_BYTES

# The station's defaults (ModelConfig, ArchiveConfig, LiveConfig, JournalConfig, DriftConfig, SOURCES' default kind).
MODEL_PATH = "/var/lib/inspectd/model"
ARCHIVE_PATH = "/var/lib/inspectd/rejects"
LIVE_PATH = ""  # the station's default: $RUNTIME_DIRECTORY/live, which is UNIT_LIVE_PATH under inspectd.service
UNIT_LIVE_PATH = "/run/inspectd/live"
LIVE_RATE_HZ = 2.0
SOURCE_KIND = "picamera2"
TRIGGER_KIND = "continuous"
DRIFT_WINDOW = 200
DRIFT_LIMIT_SIGMA = 1.5
UNJUDGED_IN_A_ROW = 3  # station.tally: frames in a row without a verdict that stop the ready line


@dataclass
class StationFacts:
    file: str
    model_path: str = MODEL_PATH
    threshold_override: float | None = None  # [model] threshold
    min_defect_area: int = 0
    confirm: list[int] | None = None
    archive_enabled: bool = True
    archive_path: str = ARCHIVE_PATH
    live_enabled: bool = True
    live_path: str = LIVE_PATH
    live_rate_hz: float = LIVE_RATE_HZ
    source_kind: str = SOURCE_KIND
    source_mode: str = ""  # a directory source's mode
    trigger_kind: str = TRIGGER_KIND
    roi: list[int] | None = None
    log: str = "all"  # [journal] log: "all" or "rejects"
    drift_enabled: bool = True
    drift_window: int = DRIFT_WINDOW
    drift_limit_sigma: float = DRIFT_LIMIT_SIGMA
    ready_line: str = ""  # [gpio.ready] line; "" = none
    found: bool = False  # the file was read
    problems: list[str] = field(default_factory=list)

    @property
    def live_on(self) -> bool:
        return self.live_enabled and self.live_rate_hz > 0

    @property
    def frames_on_demand(self) -> bool:
        """Frames come only with parts (a GPIO trigger, a watched folder): a quiet tap is an idle line, not a hung station."""
        return self.trigger_kind == "gpio" or self.source_mode == "watch"

    @property
    def live_folder(self) -> str:
        return self.live_path or UNIT_LIVE_PATH

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "found": self.found, "problems": self.problems, "source": self.source_kind, "roi": self.roi,
                "archive": self.archive_path if self.archive_enabled else None, "live": self.live_folder if self.live_on else None,
                "live_rate_hz": self.live_rate_hz if self.live_on else 0, "log": self.log, "ready_line": self.ready_line,
                "drift": {"enabled": self.drift_enabled, "window": self.drift_window, "limit_sigma": self.drift_limit_sigma},
                "rule": {"threshold_override": self.threshold_override, "min_defect_area": self.min_defect_area, "confirm": self.confirm}}


# (table, key, attribute, accepted types)
KEYS = (
    ("model", "path", "model_path", str), ("model", "threshold", "threshold_override", (int, float)),
    ("decision", "min_defect_area", "min_defect_area", int), ("decision", "confirm", "confirm", list),
    ("archive", "enabled", "archive_enabled", bool), ("archive", "path", "archive_path", str),
    ("live", "enabled", "live_enabled", bool), ("live", "path", "live_path", str), ("live", "rate_hz", "live_rate_hz", (int, float)),
    ("source", "kind", "source_kind", str), ("source", "mode", "source_mode", str), ("trigger", "kind", "trigger_kind", str),
    ("source", "roi", "roi", list), ("journal", "log", "log", str),
    ("drift", "enabled", "drift_enabled", bool), ("drift", "window", "drift_window", int),
    ("drift", "limit_sigma", "drift_limit_sigma", (int, float)),
)


def read_station(path: str | Path) -> StationFacts:
    facts = StationFacts(file=str(path))
    try:
        data = tomllib.loads(read_small_file(path, MAX_CONFIG_BYTES).decode("utf-8"))  # bounded, never a FIFO (FileRefused)
    except FileNotFoundError:
        facts.problems.append(f"{path}: not found; the page assumes the station's defaults")
        return facts
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        facts.problems.append(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or str(exc).splitlines()[0]}); "
                              "the page assumes the station's defaults (`inspectd check` says more)")
        return facts
    facts.found = True
    for table, key, attribute, kinds in KEYS:
        section = data.get(table)
        if not isinstance(section, dict) or key not in section:
            continue
        value = section[key]
        if isinstance(value, bool) and kinds is not bool or not isinstance(value, kinds):
            facts.problems.append(f"{path}: key {table}.{key}: {value!r} is not what the station takes (`inspectd check` says more)")
            continue
        setattr(facts, attribute, float(value) if kinds == (int, float) else value)
    gpio = data.get("gpio")
    if isinstance(gpio, dict) and isinstance(gpio.get("ready"), dict) and isinstance(gpio["ready"].get("line"), str):
        facts.ready_line = gpio["ready"]["line"]
    return facts
