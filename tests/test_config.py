"""The configuration: typed sections with their limits, kinds chosen from registries, and
one-line errors naming the file, the key and the fix (exit 78)."""

from __future__ import annotations

import doctest
import importlib
import json
import math
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from conftest import ROOT
from inspectd.daemon.errors import EX_CONFIG, ConfigError
from inspectd.daemon.station.config import Config, GpioConfig, ReadyLineConfig, RejectLineConfig, load
from inspectd.daemon.station.sources import SOURCES, DirectoryConfig, Picamera2Config
from inspectd.daemon.station.triggers import TRIGGERS, ContinuousConfig, IntervalConfig


def toml(tables: dict[str, dict]) -> str:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if isinstance(v, list):
            return "[" + ", ".join(value(item) for item in v) + "]"
        return json.dumps(v)

    return "".join(f"[{name}]\n" + "".join(f"{key} = {value(v)}\n" for key, v in keys.items()) for name, keys in tables.items())


def refused(tmp_path: Path, tables: dict[str, dict]) -> str:
    path = tmp_path / "inspectd.toml"
    path.write_text(toml(tables))
    with pytest.raises(ConfigError) as excinfo:
        load(path)
    message = str(excinfo.value)
    assert excinfo.value.exit_code == EX_CONFIG
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message.removeprefix(f"{path}: ")


def valid_tables(tmp_path: Path, table: str = "", kind: str | None = None) -> dict[str, dict]:
    """The smallest valid configuration in which ``table`` (of ``kind``) exists."""
    (tmp_path / "part.png").write_bytes(b"")  # a replayed folder must hold an image file (read only at run time)
    tables: dict[str, dict] = {"model": {"path": "/var/lib/inspectd/model"}, "source": {"kind": "directory", "path": str(tmp_path)}}
    if table == "source":
        tables["source"] = {"kind": kind, **({"path": str(tmp_path)} if kind == "directory" else {})}
    if table == "trigger":
        tables["trigger"] = {"kind": kind, **({"line": "GPIO22"} if kind == "gpio" else {})}
    if table.startswith("gpio") or kind == "gpio":
        tables["gpio"] = {"chip": "memory"}
    return tables


def number_keys(cls: type = Config, table: str = "") -> list[tuple[str, str | None, str]]:
    """(table, kind, key) of every number in the configuration, read off the section classes."""
    found = []
    hints = typing.get_type_hints(cls)
    for spec in fields(cls):
        if spec.metadata.get("internal"):
            continue
        where = f"{table}.{spec.name}" if table else spec.name
        registry = spec.metadata.get("registry")
        if registry is not None:
            for kind in registry.names():
                found += [(where, kind, key) for _, _, key in number_keys(registry.get(kind), where)]
            continue
        options = typing.get_args(hints[spec.name]) or (hints[spec.name],)
        for option in options:
            if is_dataclass(option):
                found += number_keys(option, where)
            elif option is float:
                found.append((table, None, spec.name))
    return found


@pytest.mark.parametrize("module", ["settings", "registry"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"inspectd.daemon.station.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.attempted and result.failed == 0


def test_the_example_file_shows_every_default():
    """systemd/inspectd.toml, as shipped, is the defaults plus the reject and ready lines it names."""
    config = load(ROOT / "systemd" / "inspectd.toml")
    assert config == Config(gpio=GpioConfig(reject=RejectLineConfig(line="GPIO17"), ready=ReadyLineConfig(line="GPIO27")))
    assert isinstance(config.source, Picamera2Config) and isinstance(config.trigger, ContinuousConfig)


def test_every_number_key_is_found():
    """The list the next test runs over reaches into kinds and nested tables (so it can miss nothing)."""
    assert sorted({f"{table}.{key}" for table, _, key in number_keys()}) == [
        "archive.max_mb", "decision.pixel_threshold", "gpio.ready.period_ms", "gpio.reject.pulse_ms", "journal.summary_interval_s",
        "model.threshold", "source.retry_max_s", "trigger.debounce_ms", "trigger.interval_ms"]
    assert [kind for table, kind, _ in number_keys() if table == "source"] == SOURCES.names()


@pytest.mark.parametrize("table,kind,key", number_keys())
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_every_number_must_be_finite(tmp_path, table, kind, key, bad):
    tables = valid_tables(tmp_path, table, kind)
    tables.setdefault(table, {})[key] = bad
    message = refused(tmp_path, tables)
    assert message.startswith(f"key {table}.{key}: must be a finite number, got {bad}; "), message


@pytest.mark.parametrize("table,kind,key,value,expected", [
    ("gpio.reject", None, "pulse_ms", 0, "must be greater than 0, got 0.0"),
    ("gpio.ready", None, "period_ms", -500, "must be greater than 0, got -500.0"),
    ("trigger", "interval", "interval_ms", 0, "must be greater than 0"),
    ("trigger", "gpio", "debounce_ms", -1, "must be at least 0, got -1.0"),
    ("trigger", "gpio", "bias", "pullup", "is 'pullup'; use one of: disabled, pull-up, pull-down, as-is"),
    ("model", None, "threshold", 0, "must be greater than 0"),
    ("model", None, "precision", "fp16", "is 'fp16'; use one of: auto, "),
    ("decision", None, "min_defect_area", -1, "must be at least 0"),
    ("decision", None, "confirm", [3, 2], "must be [N, M] with 1 <= N <= M, got [3, 2]"),
    ("journal", None, "summary_interval_s", 0, "must be greater than 0"),
    ("journal", None, "log", "some", "is 'some'; use one of: all, rejects"),
    ("archive", None, "max_mb", 0, "must be greater than 0"),
    ("archive", None, "pass_sample_every", -2, "must be at least 0"),
    ("source", "directory", "retry_max_s", 0, "must be greater than 0"),
    ("source", "directory", "mode", "follow", "is 'follow'; use one of: once, loop, watch"),
    ("source", "directory", "roi", [0, 0, 0, 10], "must be [x, y, width, height] with a positive size"),
    ("source", "picamera2", "width", 0, "must be greater than 0"),
    ("source", "picamera2", "settle_ms", -1, "must be at least 0"),
    ("source", "opencv", "height", -864, "must be greater than 0"),
])
def test_limits_are_checked_where_the_key_is_read(tmp_path, table, kind, key, value, expected):
    tables = valid_tables(tmp_path, table, kind)
    tables.setdefault(table, {})[key] = value
    message = refused(tmp_path, tables)
    assert message.startswith(f"key {table}.{key}: {expected}"), message


@pytest.mark.parametrize("table,kind,key,value,owner", [
    ("source", "directory", "device", "0", "the opencv source, not to kind = 'directory'; remove it, or set kind = 'opencv'"),
    ("source", "directory", "width", 1536, "the picamera2 and opencv sources, not to kind = 'directory'; remove it, or set kind = 'picamera2'"),
    ("source", "picamera2", "mode", "watch", "the directory source, not to kind = 'picamera2'; remove it, or set kind = 'directory'"),
    ("trigger", "continuous", "interval_ms", 500.0, "the interval trigger, not to kind = 'continuous'; remove it, or set kind = 'interval'"),
    ("trigger", "interval", "debounce_ms", 20.0, "the gpio trigger, not to kind = 'interval'; remove it, or set kind = 'gpio'"),
])
def test_a_key_of_another_kind_names_the_kind_that_uses_it(tmp_path, table, kind, key, value, owner):
    tables = valid_tables(tmp_path, table, kind)
    tables[table][key] = value
    assert refused(tmp_path, tables) == f"key {table}.{key}: belongs to {owner}"


def test_kind_choices_come_from_the_registries(tmp_path):
    assert refused(tmp_path, {"source": {"kind": "webcam"}}) == (
        f"key source.kind: 'webcam' is not a source kind; use one of: {', '.join(SOURCES.names())}")
    assert refused(tmp_path, {"trigger": {"kind": 5}}) == f"key trigger.kind: 5 is not a trigger kind; use one of: {', '.join(TRIGGERS.names())}"
    assert SOURCES.names() == ["picamera2", "opencv", "directory"] and TRIGGERS.names() == ["continuous", "interval", "gpio"]


def test_unknown_keys_and_tables_list_what_is_valid(tmp_path):
    assert refused(tmp_path, {"trigger": {"kind": "interval", "interval": 5}}) == (
        "key trigger.interval: unknown key; valid keys in [trigger]: kind, interval_ms")
    assert refused(tmp_path, {"gpio": {"chip": "memory"}, "gpio.reject": {"lines": "GPIO17"}}) == (
        "key gpio.reject.lines: unknown key; valid keys in [gpio.reject]: line, active_low, pulse_ms")
    assert refused(tmp_path, {"camera": {"width": 5}}).startswith("key camera: unknown key; valid tables: model, source, trigger, ")


def test_types_are_checked(tmp_path):
    assert refused(tmp_path, {"gpio": {"chip": "memory"}, "gpio.ready": {"active_low": "yes"}}) == (
        "key gpio.ready.active_low: must be true or false, got 'yes'")
    assert refused(tmp_path, {"decision": {"min_defect_area": 10.5}}) == "key decision.min_defect_area: must be an integer, got 10.5"
    assert refused(tmp_path, {"decision": {"confirm": [2, True]}}) == "key decision.confirm: must be a list of integers, got [2, True]"
    assert refused(tmp_path, {"model": {"threshold": True}}) == "key model.threshold: must be a number, got True"


def test_rules_across_tables(tmp_path):
    tables = valid_tables(tmp_path, "trigger", "gpio")
    del tables["gpio"]
    assert refused(tmp_path, tables).startswith("key trigger.kind: is 'gpio' but there is no [gpio] table naming the chip; ")
    tables = valid_tables(tmp_path, "trigger", "interval")
    tables["decision"] = {"confirm": [2, 3]}
    assert refused(tmp_path, tables) == ("key decision.confirm: needs consecutive frames of the same part, and a interval trigger "
                                         "takes one per part; remove it, or use trigger kind 'continuous'")
    assert refused(tmp_path, {"source": {"kind": "directory", "path": str(tmp_path / "absent")}}) == (
        f"key source.path: '{tmp_path / 'absent'}' is not a folder; create it or point to the images")


def test_a_gpio_line_is_used_once(tmp_path):
    tables = valid_tables(tmp_path, "gpio.ready")
    tables["gpio.reject"], tables["gpio.ready"] = {"line": "GPIO17"}, {"line": "GPIO17"}
    assert refused(tmp_path, tables) == "key gpio.ready.line: 'GPIO17' is already gpio.reject.line; each line can be used once: choose another line"
    tables["gpio.ready"] = {"line": "27"}
    tables["trigger"] = {"kind": "gpio", "line": " 27"}  # an offset, however written
    assert refused(tmp_path, tables).startswith("key trigger.line: ' 27' is already gpio.ready.line; ")


def test_a_replayed_folder_must_hold_images(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    assert refused(tmp_path, {"source": {"kind": "directory", "path": str(tmp_path), "mode": "loop"}}).startswith(
        f"key source.path: '{tmp_path}' holds no images (.png, ")
    path = tmp_path / "watched.toml"
    path.write_text(toml({"source": {"kind": "directory", "path": str(tmp_path), "mode": "watch"}}))
    assert load(path).source.frames_on_demand  # a watched folder fills later


def test_sections_built_in_code_check_themselves(tmp_path):
    (tmp_path / "part.png").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^key interval_ms: must be a finite number, got nan"):
        IntervalConfig(interval_ms=float("nan"))
    with pytest.raises(ConfigError, match=r"^key path: is required for a directory source"):
        DirectoryConfig()
    with pytest.raises(ConfigError, match=r"^key decision.confirm: "):
        Config(source=DirectoryConfig(path=str(tmp_path)), trigger=IntervalConfig(), decision=Config().decision.__class__(confirm=[1, 2]))
