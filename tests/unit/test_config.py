"""The configuration: typed sections with their limits, kinds chosen from registries, and
one-line errors naming the file, the key and the fix (exit 78)."""

from __future__ import annotations

import doctest
import importlib
import json
import math
import re
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from conftest import ROOT
from inspectd.daemon.errors import EX_CONFIG, ConfigError
from inspectd.daemon.station.config import Config, GpioConfig, ReadyLineConfig, RejectLineConfig, load, threshold_errors
from inspectd.daemon.station.settings import DAY_S, INT_MAX, ConfigErrors
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


def number_keys(cls: type = Config, table: str = "", of: type = float) -> list[tuple[str, str | None, str]]:
    """(table, kind, key) of every number (``of``: float or int) in the configuration, read off the section classes."""
    found = []
    hints = typing.get_type_hints(cls)
    for spec in fields(cls):
        if spec.metadata.get("internal"):
            continue
        where = f"{table}.{spec.name}" if table else spec.name
        registry = spec.metadata.get("registry")
        if registry is not None:
            for kind in registry.names():
                found += [(where, kind, key) for _, _, key in number_keys(registry.get(kind), where, of)]
            continue
        options = typing.get_args(hints[spec.name]) or (hints[spec.name],)
        for option in options:
            if is_dataclass(option):
                found += number_keys(option, where, of)
            elif option is of:
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
    assert {f"{table}.{key}" for table, _, key in number_keys()} >= {
        "archive.max_mb", "decision.pixel_threshold", "gpio.ready.period_ms", "gpio.reject.pulse_ms", "journal.summary_interval_s",
        "model.threshold", "source.retry_max_s", "trigger.debounce_ms", "trigger.interval_ms"}
    assert list(dict.fromkeys(kind for table, kind, _ in number_keys() if table == "source")) == SOURCES.names()


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
    ("decision", None, "confirm", [3, 2], "must be [N, M] with 1 <= N <= M <= 1000, got [3, 2]"),
    ("decision", None, "confirm", [1, 5000], "must be [N, M] with 1 <= N <= M <= 1000, got [1, 5000]"),
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
    assert refused(tmp_path, tables) == ("key decision.confirm: needs consecutive frames of the same part, and an interval trigger "
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


def test_every_error_of_the_file_at_once(tmp_path):
    """Each bad key is set aside and the parser goes on; the rules across tables still run (on what is valid)."""
    tables = valid_tables(tmp_path, "trigger", "interval")
    tables["model"].update(threshold=float("nan"), precison="f32")
    tables["trigger"]["interval_ms"] = "fast"
    tables.update({"gpio": {"chip": "memory"}, "gpio.reject": {"line": "GPIO17"}, "gpio.ready": {"line": "GPIO17", "period_ms": -1},
                   "decision": {"confirm": [2, 3]}})
    path = tmp_path / "inspectd.toml"
    path.write_text(toml(tables))
    with pytest.raises(ConfigErrors) as excinfo:
        load(path)
    errors = excinfo.value.errors
    assert [error.key for error in errors] == ["model.threshold", "model.precison", "trigger.interval_ms", "gpio.ready.period_ms",
                                               "gpio.ready.line", "decision.confirm"]
    assert all(str(error).startswith(f"{path}: key {error.key}: ") and "\n" not in str(error) for error in errors)
    assert excinfo.value.exit_code == EX_CONFIG
    assert str(excinfo.value) == f"{errors[0]} (and 5 more; `inspectd check` lists them all)"  # where one line is shown (a reload)


@pytest.mark.parametrize("tables,expected", [
    ({"source": {"kind": "directory", "path": 5}}, "key source.path: must be a string, got 5"),  # not also "is required"
    ({"trigger": {"kind": "gpio", "line": 22}, "gpio": {"chip": "memory"}}, "key trigger.line: must be a string, got 22"),
    ({"trigger": {"kind": "gpio", "line": "GPIO22"}, "gpio": {"chip": 17}}, "key gpio.chip: must be a string, got 17"),  # not "no [gpio]"
    ({"decision": {"confirm": "2 of 3"}}, "key decision.confirm: must be a list of integers, got '2 of 3'"),
])
def test_a_key_set_aside_brings_no_follow_on_error(tmp_path, tables, expected):
    tables = {**valid_tables(tmp_path), **tables}
    assert refused(tmp_path, tables) == expected  # one error: refused() fails on ConfigErrors' longer text


DURATION_KEYS = [(table, kind, key) for of in (float, int) for table, kind, key in number_keys(of=of) if key.endswith(("_ms", "_s"))]


def test_every_duration_is_found():
    assert {f"{table}.{key}" for table, _, key in DURATION_KEYS} >= {
        "gpio.ready.period_ms", "gpio.reject.pulse_ms", "journal.summary_interval_s", "source.retry_max_s", "source.settle_ms",
        "trigger.debounce_ms", "trigger.interval_ms"}


@pytest.mark.parametrize("table,kind,key", DURATION_KEYS)
def test_no_duration_is_longer_than_a_day(tmp_path, table, kind, key):
    """Longer, and the station idles (an interval), waits (a debounce, a retry) or holds a line with a healthy watchdog.
    A key with a lower limit of its own (one a stop or a start waits for: the unit's timeouts) says that one."""
    day = DAY_S * 1000 if key.endswith("_ms") else DAY_S
    tables = valid_tables(tmp_path, table, kind)
    if kind == "directory":
        tables[table]["mode"] = "watch"  # the directory kind's durations are for a watched folder
    tables.setdefault(table, {})[key] = day + 1
    message = refused(tmp_path, tables)
    own = re.match(rf"key {re.escape(table)}\.{key}: must be at most (\d+), got {day + 1}", message)
    assert message.startswith(f"key {table}.{key}: must be at most {day} (a day), got {day + 1}") or (own and int(own[1]) < day), message
    if own and int(own[1]) < day:
        day = int(own[1])
    tables[table][key] = day
    path = tmp_path / "day.toml"
    path.write_text(toml(tables))
    assert getattr(load(path), table.split(".")[0]) is not None  # a day is accepted


INT_KEYS = [(table, kind, key) for table, kind, key in number_keys(of=int) if not key.endswith(("_ms", "_s"))]


@pytest.mark.parametrize("table,kind,key", INT_KEYS)
def test_every_integer_fits_in_32_bits(tmp_path, table, kind, key):
    tables = valid_tables(tmp_path, table, kind)
    tables.setdefault(table, {})[key] = INT_MAX + 1
    message = refused(tmp_path, tables)
    own = re.match(rf"key {re.escape(table)}\.{key}: must be at most (\d+), got {INT_MAX + 1};", message)  # a lower limit of its own
    assert (own and int(own[1]) < INT_MAX) or message.startswith(f"key {table}.{key}: must fit in 32 bits (at most {INT_MAX}), got {INT_MAX + 1}")


@pytest.mark.parametrize("key,value", [("source.roi", [0, 0, 2**40, 10]), ("decision.confirm", [1, 2**40])])
def test_lists_of_integers_fit_in_32_bits(tmp_path, key, value):
    table, name = key.split(".")
    tables = valid_tables(tmp_path)
    tables.setdefault(table, {})[name] = value
    assert refused(tmp_path, tables).startswith(f"key {key}: must hold numbers that fit in 32 bits")


def test_numbers_too_big_for_a_float_are_refused(tmp_path):
    path = tmp_path / "inspectd.toml"
    path.write_text(f"[archive]\nmax_mb = {10**400}\n")
    with pytest.raises(ConfigError, match=r"key archive.max_mb: must be a finite number, got 1000"):
        load(path)
    path.write_text(f"[archive]\nmax_mb = {'9' * 5000}\n")  # beyond Python's integer-to-string limit: tomllib refuses it
    with pytest.raises(ConfigError, match=r"not valid TOML \(Exceeds the limit"):
        load(path)
    path.write_text("a = " + "[" * 2000 + "]" * 2000 + "\n")
    with pytest.raises(ConfigError, match=r"not valid TOML \(arrays or tables nested too deeply\)"):
        load(path)


def test_strings_are_printable(tmp_path):
    """A path or a name is shown in one-line messages, and a NUL in a path fails os calls with ValueError."""
    tables = valid_tables(tmp_path)
    tables["model"]["path"] = "/var/lib/inspectd/model\n"
    assert refused(tmp_path, tables) == "key model.path: must hold no control characters, got '/var/lib/inspectd/model\\n'; " \
                                        "write it on one line, printable"
    tables = valid_tables(tmp_path, "gpio.reject")
    tables["gpio.reject"] = {"line": "GPIO\x0017"}
    assert refused(tmp_path, tables).startswith("key gpio.reject.line: must hold no control characters")
    path = tmp_path / "inspectd.toml"
    path.write_text('[trigger]\nkind = "interval"\n"interval\\tms" = 5\n')  # a quoted key may hold anything
    with pytest.raises(ConfigError, match=r"key trigger.'interval\\tms': unknown key; "):
        load(path)


@pytest.mark.parametrize("source,decision,expected", [
    ({"kind": "picamera2", "width": 640, "height": 480}, {"min_defect_area": 640 * 480 + 1},
     "key decision.min_defect_area: 307201 pixels is more than a frame has (307200, source.width x height): no part would ever be rejected"),
    ({"kind": "opencv", "roi": [0, 0, 100, 50]}, {"min_defect_area": 5001}, "key decision.min_defect_area: 5001 pixels is more than a frame has (5000, source.roi)"),
    ({"kind": "opencv", "max_pixels": 1000}, {"min_defect_area": 1001}, "key decision.min_defect_area: 1001 pixels is more than a frame has (1000, source.max_pixels)"),
    ({"kind": "picamera2", "width": 640, "height": 480, "roi": [600, 0, 100, 100]}, {},
     "key source.roi: [600, 0, 100, 100] reaches outside the 640x480 frame of source.width and height"),
    ({"kind": "opencv", "max_pixels": 1000, "roi": [0, 0, 100, 100]}, {}, "key source.roi: [0, 0, 100, 100] covers 10000 pixels, more than source.max_pixels (1000)"),
])
def test_sizes_that_no_frame_can_meet(tmp_path, source, decision, expected):
    """A minimum defect area larger than the frame rejects nothing, ever; an ROI outside a camera's fixed size crops nothing."""
    tables = {**valid_tables(tmp_path), "source": source, "decision": decision}
    assert refused(tmp_path, tables).startswith(expected)
    tables["decision"] = {"min_defect_area": 10}
    tables["source"] = {key: value for key, value in source.items() if key != "roi"}
    path = tmp_path / "fits.toml"
    path.write_text(toml(tables))
    assert load(path).decision.min_defect_area == 10


def test_the_archive_is_not_the_watched_folder(tmp_path):
    """Archived frames written where the station watches would come back as new parts, each REJECT archiving another."""
    tables = {**valid_tables(tmp_path), "source": {"kind": "directory", "path": str(tmp_path), "mode": "watch"},
              "archive": {"path": f"{tmp_path}/."}}
    assert refused(tmp_path, tables).startswith(f"key archive.path: '{tmp_path}/.' is the source folder source.path '{tmp_path}': ")
    tables["archive"] = {"path": str(tmp_path / "rejects")}  # a sub-folder is the source's too
    assert refused(tmp_path, tables).startswith(f"key archive.path: '{tmp_path}/rejects' lies inside the source folder source.path ")
    (tmp_path / "parts").mkdir()
    tables["source"]["path"] = str(tmp_path / "parts")  # beside it: apart
    path = tmp_path / "fits.toml"
    path.write_text(toml(tables))
    assert load(path).archive.path == str(tmp_path / "rejects")


def test_a_threshold_far_from_the_folders_is_refused(tmp_path):
    """Ten times off the model folder's threshold, the station rejects almost every part or almost none."""
    path = tmp_path / "inspectd.toml"
    path.write_text(toml({**valid_tables(tmp_path), "model": {"threshold": 140.0}, "decision": {"pixel_threshold": 1.3}}))
    config = load(path)
    assert threshold_errors(config, 14.0)[0].format() == (
        f"{path}: key decision.pixel_threshold: 1.3 is more than 10 times off the model folder's threshold 14: almost every part "
        "would be rejected; a raw score between 1.4 and 140, or remove it to use the folder's")
    assert [error.key for error in threshold_errors(config, 13.9)] == ["model.threshold", "decision.pixel_threshold"]
    assert threshold_errors(config, 13.0)[0].problem.endswith("almost no part would be rejected")
