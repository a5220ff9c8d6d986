"""Property-based tests of the configuration parser (hypothesis), over the real key set read off the section classes.

- Any TOML document (valid values, wrong types, NaN/inf, negative and huge numbers, unknown keys, keys of another
  kind, control characters) is either loaded or refused with ConfigError: every line naming the file, exit 78.
- Through the CLI, `check` and `run` print the same lines, no traceback, and create nothing.
- A valid document (every limit and every rule across keys respected) always loads, with the values written.
"""

from __future__ import annotations

import math
import os
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inspectd.daemon.cli import main
from inspectd.daemon.errors import EX_CONFIG, ConfigError
from inspectd.daemon.station.config import CONFIRM_MAX, Config, load, overlap
from inspectd.daemon.station.settings import DURATIONS, INT_MAX, every



def sections(cls: type = Config, where: str = "") -> dict[str, dict[str | None, type]]:
    """Each table of the file -> its section class by kind (None for a table without kinds)."""
    found: dict[str, dict[str | None, type]] = {}
    hints = typing.get_type_hints(cls)
    for spec in fields(cls):
        name = f"{where}.{spec.name}" if where else spec.name
        if "registry" in spec.metadata:
            registry = spec.metadata["registry"]
            found[name] = {kind: registry.get(kind) for kind in registry.names()}
            continue
        for option in typing.get_args(hints[spec.name]) or (hints[spec.name],):
            if is_dataclass(option):
                found[name] = {None: option}
                found.update(sections(option, name))
    return found


SECTIONS = sections()


def leaves(cls: type) -> dict[str, tuple[object, dict]]:
    """A section's own keys (not nested tables, not internal): name -> (type hint, limits)."""
    hints = typing.get_type_hints(cls)
    found = {}
    for spec in fields(cls):
        hint = hints[spec.name]
        options = [option for option in typing.get_args(hint) or (hint,) if option is not type(None)]
        if spec.metadata.get("internal") or any(is_dataclass(option) for option in options):
            continue
        found[spec.name] = (options[0], dict(spec.metadata))
    return found


# ----------------------------------------------------------------- TOML text

def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\U{ord(c):08x}" for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_value(str(key))} = {toml_value(item)}" for key, item in value.items()) + "}"


def to_toml(document: dict[str, object]) -> str:
    """Every top-level key on its own line; tables inline (nested ones too)."""
    return "".join(f"{toml_value(key)} = {toml_value(value)}\n" for key, value in document.items())


# ----------------------------------------------------------------- any document

SCALARS = st.one_of(st.text(max_size=12), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.booleans())
ANY = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=6), SCALARS, max_size=3))
EDGES = [0, -1, 1, 86_400_000, 86_400_001, INT_MAX, INT_MAX + 1, 2**63 - 1, 10**400, 1e300, -1e-300, math.nan, math.inf, -math.inf]


def typed(hint: object, limits: dict) -> st.SearchStrategy:
    """A value of the key's type, of any size: what an integrator might write."""
    if hint is float:
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-2**70, max_value=2**70),
                         st.sampled_from(EDGES))
    if hint is int:
        return st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.sampled_from([e for e in EDGES if isinstance(e, int)]))
    if hint is bool:
        return st.booleans()
    if hint is str:
        choices = limits.get("choices")
        named = st.sampled_from(["", "memory", "GPIO17", "17", " 17", "/tmp", ".", "/proc/x", "/nonexistent", "a" * 300, "x\ny"])
        return st.one_of(st.text(max_size=20), named, *( [st.sampled_from(choices)] if choices else []))
    return st.lists(st.integers(min_value=-2**40, max_value=2**40), max_size=6)  # list[int]


@st.composite
def tables(draw, name: str) -> dict:
    kinds = SECTIONS[name]
    table: dict[str, object] = {}
    kind = draw(st.sampled_from(list(kinds)))
    if kind is not None and draw(st.booleans()):
        table["kind"] = draw(st.one_of(st.just(kind), ANY))
    keys = leaves(kinds[kind])
    others = {key: spec for section in kinds.values() for key, spec in leaves(section).items()}  # keys of another kind
    for key in draw(st.lists(st.sampled_from(sorted(others)), max_size=len(others), unique=True)):
        hint, limits = others[key]
        table[key] = draw(st.one_of(typed(hint, limits), ANY) if key in keys else typed(hint, limits))
    for key in draw(st.lists(st.text(max_size=8), max_size=2)):
        table.setdefault(key, draw(ANY))  # unknown keys
    for nested in (table_name for table_name in SECTIONS if table_name.startswith(f"{name}.") and table_name.count(".") == name.count(".") + 1):
        if draw(st.booleans()):
            table[nested.rsplit(".", 1)[1]] = draw(st.one_of(tables(nested), ANY))
    return table


@st.composite
def documents(draw) -> dict:
    top = [name for name in SECTIONS if "." not in name]
    document: dict[str, object] = {}
    for name in draw(st.lists(st.sampled_from(top), max_size=len(top), unique=True)):
        document[name] = draw(st.one_of(tables(name), ANY) if draw(st.integers(0, 9)) == 0 else tables(name))
    for key in draw(st.lists(st.text(max_size=8), max_size=2)):
        document.setdefault(key, draw(ANY))
    return document


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A replayable folder (one image, named only: load lists files, it does not read them), where each example's
    file is written (one folder per module: hypothesis runs many examples per test call)."""
    path = tmp_path_factory.mktemp("config_properties")
    (path / "part.png").write_bytes(b"")
    return path


def refused_lines(error: ConfigError, path: Path) -> list[str]:
    lines = [str(each) for each in every(error)]
    assert error.exit_code == EX_CONFIG and all(each.exit_code == EX_CONFIG for each in every(error))
    for line in lines:
        assert line.startswith(f"{path}: ") and "\n" not in line and "\r" not in line, line
    return lines


# Found by these tests on the parser as it was: float() of a huge integer overflowed; a quoted key or a path holding a
# line break broke the one-line messages.
FOUND = [{"decision": {"pixel_threshold": 10**400}}, {"\r": ""}, {"source": {"kind": "directory", "path": "x\ny"}},
         {"gpio": {"chip": "memory", "ready": {"line": "GPIO5", "period_ms": 10**400}}}]


@given(document=documents())
@example(document=FOUND[0])
@example(document=FOUND[1])
@example(document=FOUND[2])
@example(document=FOUND[3])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_document_loads_or_is_refused_in_lines_naming_the_file(document, folder):
    path = folder / "inspectd.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    try:
        config = load(path)
    except ConfigError as error:
        refused_lines(error, path)
    else:
        assert isinstance(config, Config)


@given(document=documents())
@example(document=FOUND[1])
@example(document=FOUND[2])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_check_and_run_print_the_same_lines_and_create_nothing(document, folder, capsys, monkeypatch):
    """No model folder here, so both refuse; what they print is judged: one line per error, no traceback, the same."""
    document = {**document, "model": {**(document["model"] if isinstance(document.get("model"), dict) else {}), "path": "no-model"}}
    path = folder / "inspectd.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    monkeypatch.chdir(folder)  # relative archive paths land here, if anywhere
    before = sorted(os.listdir(folder))
    printed = []
    for command in (["check"], ["run", "--frames", "1"]):
        code = main([*command, "--config", str(path)])
        err = capsys.readouterr().err
        assert code == EX_CONFIG and "Traceback" not in err, err
        lines = err.splitlines()
        assert lines and all(line.startswith(f"inspectd: {path}: ") for line in lines), err
        printed.append(lines)
    assert printed[0] == printed[1]
    assert sorted(os.listdir(folder)) == before


# ----------------------------------------------------------------- valid documents

def number(hint: object, limits: dict, key: str) -> st.SearchStrategy:
    """A value inside the key's limits: its own, a duration's day, 32 bits."""
    low = limits.get("above", limits.get("minimum", -1e6 if hint is float else -INT_MAX))
    high = limits.get("maximum", next((most for unit, most in DURATIONS.items() if key.endswith(unit)), 1e6 if hint is float else INT_MAX))
    if hint is int:
        return st.integers(min_value=int(low) + ("above" in limits), max_value=int(high))
    return st.floats(min_value=low, max_value=high, exclude_min="above" in limits, allow_nan=False)


def plain(cls: type, draw, skip: tuple[str, ...] = ()) -> dict:
    """Some of the section's keys with valid values, from their limits (keys needing a rule across keys are left to the caller)."""
    table = {}
    for key, (hint, limits) in leaves(cls).items():
        if key in skip or not draw(st.booleans()):
            continue
        if "choices" in limits:
            table[key] = draw(st.sampled_from(limits["choices"]))
        elif hint is bool:
            table[key] = draw(st.booleans())
        elif hint in (int, float):
            table[key] = draw(number(hint, limits, key))
        elif hint is str:
            table[key] = draw(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs", "Cf", "Co", "Cn")), max_size=20))
    return table


@st.composite
def valid_documents(draw, folder: Path) -> dict:
    document: dict[str, dict] = {}
    kind = draw(st.sampled_from(list(SECTIONS["source"])))
    source_cls = SECTIONS["source"][kind]
    source = {"kind": kind, **plain(source_cls, draw, skip=("path", "device", "mode", "roi", "max_pixels", "settle_s", "done", "backlog"))}
    if kind == "directory":
        source["path"] = str(folder)
        source["mode"] = draw(st.sampled_from(["once", "loop", "watch"]))
        if source["mode"] == "watch":
            source.update(plain(source_cls, draw, skip=tuple(k for k in leaves(source_cls) if k not in ("settle_s", "done", "backlog"))))
    if kind == "opencv":
        source["device"] = draw(st.sampled_from(["0", "/dev/video0", "rtsp://camera.local/stream"]))
    width, height = source.get("width", 1536), source.get("height", 864)
    max_pixels = source["max_pixels"] = draw(st.integers(min_value=1, max_value=40_000_000))
    if draw(st.booleans()):
        w = draw(st.integers(1, min(width if kind == "picamera2" else INT_MAX, max_pixels)))
        h = draw(st.integers(1, min(height if kind == "picamera2" else INT_MAX, max_pixels // w)))
        x = draw(st.integers(0, width - w if kind == "picamera2" else INT_MAX - w))
        y = draw(st.integers(0, height - h if kind == "picamera2" else INT_MAX - h))
        source["roi"] = [x, y, w, h]
    document["source"] = source
    frame = min(max_pixels, width * height if kind == "picamera2" else max_pixels, source["roi"][2] * source["roi"][3] if "roi" in source else max_pixels)

    lines = iter(draw(st.permutations(["GPIO5", "GPIO6", "7", "GPIO8", ""]))[:3])
    trigger_kind = draw(st.sampled_from(list(SECTIONS["trigger"])))
    trigger = {"kind": trigger_kind, **plain(SECTIONS["trigger"][trigger_kind], draw, skip=("line",))}
    if trigger_kind == "gpio":
        trigger["line"] = next(lines) or "GPIO9"
    document["trigger"] = trigger
    if trigger_kind == "gpio" or draw(st.booleans()):
        document["gpio"] = {**plain(SECTIONS["gpio"][None], draw),
                            "reject": {**plain(SECTIONS["gpio.reject"][None], draw, skip=("line",)), "line": next(lines)},
                            "ready": {**plain(SECTIONS["gpio.ready"][None], draw, skip=("line",)), "line": next(lines)}}
    decision = plain(SECTIONS["decision"][None], draw, skip=("min_defect_area", "confirm"))
    decision["min_defect_area"] = draw(st.integers(0, frame))
    if SECTIONS["trigger"][trigger_kind].streams and draw(st.booleans()):
        m = draw(st.integers(1, CONFIRM_MAX))
        decision["confirm"] = [draw(st.integers(1, m)), m]
    document["decision"] = decision
    for name in ("model", "journal", "archive", "drift"):
        document[name] = plain(SECTIONS[name][None], draw)
    if document["archive"].get("path") in ("", ".", str(folder)):
        document["archive"]["path"] = "rejects"
    archive = Path(document["archive"].get("path", Config().archive.path))
    read = [document["model"].get("path", Config().model.path), str(folder / "inspectd.toml"), source.get("path", "")]
    if any(overlap(archive, Path(other)) for other in read if other.strip()):  # the archive must be a folder of its own
        document["archive"]["path"] = str(folder.parent / f"{folder.name}-rejects")
        document["model"]["path"] = str(folder.parent / f"{folder.name}-model")
    return document


@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_a_valid_document_always_loads_with_its_values(data, folder):
    document = data.draw(valid_documents(folder))
    path = folder / "inspectd.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    config = load(path)
    for name, table in document.items():
        section = getattr(config, name)
        assert section.kind == table["kind"] if "kind" in table else True
        for key, value in table.items():
            if key != "kind" and not isinstance(value, dict):
                assert getattr(section, key) == value, (name, key)
