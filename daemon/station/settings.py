"""Configuration sections: dataclasses that check their own values, and the parser that fills
them from TOML tables.

A section declares each key once, as a field with its type, default and limits:

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Lamp(Section):
    ...     pulse_ms: float = setting(100.0, above=0, fix="a pulse length in milliseconds, e.g. 100")
    >>> print(parse(Lamp, {"pulse_ms": float("nan")}, file="lamp.toml", where="lamp"))
    Traceback (most recent call last):
    ...
    inspectd.daemon.errors.ConfigError: lamp.toml: key lamp.pulse_ms: must be a finite number, got nan; a pulse length in milliseconds, e.g. 100

The limits are checked when a section is constructed, whether from a file or in code; the
parser adds what only it knows: unknown keys, types, and where (file, full key) a problem is.
It reports every problem of a file at once: a bad key is set aside (its default stands in) and
the parser goes on, so rules across keys still judge what the user wrote. One problem raises
a ConfigError; several raise ConfigErrors, whose ``errors`` are each one line:

    >>> try:
    ...     parse(Lamp, {"pulse_ms": -1, "colour": "red"}, file="lamp.toml", where="lamp")
    ... except ConfigErrors as problems:
    ...     for error in problems.errors:
    ...         print(error)
    lamp.toml: key lamp.pulse_ms: must be greater than 0, got -1.0; a pulse length in milliseconds, e.g. 100
    lamp.toml: key lamp.colour: unknown key; valid keys in [lamp]: pulse_ms

Beside each key's own limits, three hold for every key (so a key added later has them too):
a duration (a key ending in ``_ms`` or ``_s``) is at most a day, a string is printable (no
control characters: it is a path or a name, and messages are one line), and an integer fits
in 32 bits (OpenCV, libcamera and the kernel take C ints).
"""

from __future__ import annotations

import tomllib
import typing
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from functools import cache
from os import PathLike
from pathlib import Path
from typing import Any

from inspectd.daemon.errors import ConfigError, InspectdError
from inspectd.daemon.files import FileRefused, read_small_file
from inspectd.daemon.fields import convert, describe, internal, setting
from inspectd.daemon.fields import problem as fields_problem

__all__ = ["ConfigError", "ConfigErrors", "Section", "collect", "internal", "parse", "raise_all", "setting"]


DAY_S = 86_400
DURATIONS = {"_ms": DAY_S * 1000, "_s": DAY_S}  # a key's unit, from its name, and its longest value: a day
# Longer, and the station idles (or waits, or pulses) with a healthy watchdog: that is a mistake of units, not a setting.
INT_MAX = 2**31 - 1


class ConfigErrors(ConfigError):
    """Several configuration errors at once, each one line in ``errors``. Its own text is the first line and a count,
    for places that show one line (a reload's fault record); ``inspectd check`` and ``run`` print them all."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.problem, file=first.file, key=first.key, fix=first.fix)

    def format(self) -> str:
        return f"{self.errors[0].format()} (and {len(self.errors) - 1} more; `inspectd check` lists them all)"


def every(error: InspectdError) -> list[InspectdError]:
    """The one-line errors inside ``error``: itself, or each of a ConfigErrors."""
    return list(error.errors) if isinstance(error, ConfigErrors) else [error]


def distinct(errors: list[ConfigError]) -> list[ConfigError]:
    """One error per key (the first): a key set aside for its value is not reported again for its default."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for error in errors:
        where = (str(error.file), error.key or error.problem)
        if where not in seen:
            seen.add(where)
            kept.append(error)
    return kept


def raise_all(errors: list[ConfigError]) -> None:
    """Nothing for none, the error itself for one, ConfigErrors for several."""
    errors = distinct(errors)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


@dataclass
class Section:
    """A table of the configuration file. Subclasses add fields and may override ``check``."""

    def __post_init__(self) -> None:
        hints = hints_of(type(self))
        errors = [error for spec in fields(self) if (error := limit_error(spec, getattr(self, spec.name), hints[spec.name]))]
        errors += checked(self)
        raise_all(errors)

    def check(self) -> None:
        """Rules that involve more than one key; raise ConfigError(key=<field name>), or ConfigErrors for several."""


def checked(section: Section) -> list[ConfigError]:
    """The errors of ``section.check()``; one that looks at the machine (a folder) and cannot is one of them too."""
    try:
        section.check()
    except ConfigError as error:
        return every(error)
    except OSError as exc:
        return [ConfigError(f"cannot be checked ({exc.strerror or exc}: {exc.filename!r})", fix="check the paths in this table")]
    return []


def limit_error(spec: Field, value: object, hint: Any) -> ConfigError | None:
    """The field's own type and limits (``fields.problem``), then the limits every key of the file has."""
    if spec.metadata.get("internal"):
        return None
    found = fields_problem(spec, value, hint)
    if found is not None:
        return ConfigError(found[0], key=spec.name, fix=found[1])
    return _general_limit(spec.name, value, spec.metadata.get("fix"))


@cache
def hints_of(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _general_limit(key: str, value: object, fix: str | None) -> ConfigError | None:
    """The limits every key has: a duration is at most a day, a string is printable, an integer fits in 32 bits."""
    longest = next((most for unit, most in DURATIONS.items() if key.endswith(unit)), None)
    if longest is not None and isinstance(value, (int, float)) and value > longest:
        return ConfigError(f"must be at most {longest} (a day), got {value}", key=key,
                           fix=f"{fix}; longer means the station waits a day or more with a healthy watchdog" if fix else
                           "a duration of a day or less")
    if isinstance(value, str) and not value.isprintable():  # a path or name, shown in one-line messages
        return ConfigError(f"must hold no control characters, got {value!r}", key=key, fix=fix or "write it on one line, printable")
    if isinstance(value, int) and abs(value) > INT_MAX:
        return ConfigError(f"must fit in 32 bits (at most {INT_MAX}), got {value}", key=key, fix=fix or "write a smaller number")
    values = value if isinstance(value, list) else []
    if any(isinstance(item, int) and abs(item) > INT_MAX for item in values):
        return ConfigError(f"must hold numbers that fit in 32 bits (at most {INT_MAX}), got {value}", key=key,
                           fix=fix or "write smaller numbers")
    return None


def located(error: InspectdError, file: str | PathLike | None, where: str = "") -> InspectdError:
    """The same error, naming the file and the full key (``where`` is the table it came from)."""
    if isinstance(error, ConfigErrors):
        return ConfigErrors([located(each, file, where) for each in error.errors])
    if error.file is not None:
        return error
    key = ".".join(part for part in (where, error.key) if part) or None
    return type(error)(error.problem, file=file, key=key, fix=error.fix, exit_code=error.exit_code)


def parse(cls: type, table: object, *, file: str | PathLike, where: str = "", kinds: Any = None) -> Any:
    """A ``cls`` section from a TOML table; ``kinds`` (a Registry) says which other kinds' keys to name in errors.
    Raises every problem found (ConfigError, or ConfigErrors for several)."""
    section, errors = collect(cls, table, file=file, where=where, kinds=kinds)
    raise_all(errors)
    return section


def collect(cls: type, table: object, *, file: str | PathLike, where: str = "", kinds: Any = None) -> tuple[Any, list[ConfigError]]:
    """A ``cls`` section and every problem of its table. A bad key is set aside and keeps its default, so the section
    is built from what is valid and the rules across keys (``check``) still run (a key they refuse is set aside as well);
    None when ``table`` is not a table."""
    if not isinstance(table, dict):
        return None, [ConfigError(f"must be a table, got {table!r}", file=file, key=where or None,
                                  fix=f"write it as [{where}] with its keys below")]
    hints = hints_of(cls)
    known = {spec.name: spec for spec in fields(cls) if not spec.metadata.get("internal")}
    values: dict[str, Any] = {}
    errors: list[ConfigError] = []
    for key, value in table.items():
        shown = key if key.isprintable() else repr(key)  # a quoted TOML key may hold anything
        name = f"{where}.{shown}" if where else shown
        if key not in known:
            errors.append(_unknown_key(cls, key, name, file, kinds, list(known)))
            continue
        spec = known[key]
        if "registry" in spec.metadata:
            converted, found = collect_kind(spec.metadata["registry"], value, file=file, where=name)
        else:
            converted, found = _convert(hints[key], value, file, name)
            if not found and (error := limit_error(spec, converted, hints[key])) is not None:
                found = [located(error, file, where)]
        errors += found
        if converted is not None and not (found and not is_dataclass(converted)):
            values[key] = converted  # a nested section keeps its valid keys even when others were set aside
    errors += [located(error, file, where) for error in checked(unchecked(cls, values))]
    # A key of this table the rules across keys refuse is set aside too: what reads the section never meets it
    # (a refusal naming a key deeper down or none is left to the readers that know, as preflight's clean() does).
    while refused := {error.key for error in checked(unchecked(cls, values))} & values.keys():
        values = {key: value for key, value in values.items() if key not in refused}
    return unchecked(cls, values), distinct(errors)


def unchecked(cls: type, values: dict[str, Any]) -> Any:
    """A ``cls`` with ``values`` (already checked one by one) and defaults for the rest, without running its checks."""
    section = cls.__new__(cls)
    for spec in fields(cls):
        if spec.name in values:
            value = values[spec.name]
        else:
            value = spec.default_factory() if spec.default_factory is not MISSING else spec.default
        object.__setattr__(section, spec.name, value)
    return section


def collect_kind(registry: Any, table: object, *, file: str | PathLike, where: str) -> tuple[Any, list[ConfigError]]:
    """A table whose ``kind`` key chooses its section class from ``registry``."""
    if not isinstance(table, dict):
        return None, [ConfigError(f"must be a table, got {table!r}", file=file, key=where,
                                  fix=f"write it as [{where}] with kind = ... below")]
    rest = dict(table)
    kind = rest.pop("kind", registry.default)
    try:
        cls = registry.get(kind, file=file, key=f"{where}.kind")
    except ConfigError as error:
        return None, [error]
    return collect(cls, rest, file=file, where=where, kinds=registry)


def _unknown_key(cls: type, key: str, name: str, file: str | PathLike, kinds: Any, valid: list[str]) -> ConfigError:
    owners = kinds.having(key) if kinds is not None else []
    if owners:
        which = " and ".join(owners)
        return ConfigError(f"belongs to the {which} {kinds.part}{'s' if len(owners) > 1 else ''}, not to kind = {cls.kind!r}",
                           file=file, key=name, fix=f"remove it, or set kind = {owners[0]!r}")
    if kinds is not None:
        valid = ["kind", *valid]
    table = name.rsplit(".", 1)[0] if "." in name else None
    return ConfigError("unknown key", file=file, key=name,
                       fix=f"valid keys in [{table}]: {', '.join(valid)}" if table else f"valid tables: {', '.join(valid)}")


def _convert(hint: Any, value: object, file: str | PathLike, name: str) -> tuple[Any, list[ConfigError]]:
    """``value`` as the type ``hint`` asks for (``fields.convert``), and the problems found (a nested table's included)."""
    nested: list[ConfigError] = []

    def table(cls: type, data: object) -> Any:
        section, errors = collect(cls, data, file=file, where=name)
        nested.extend(errors)
        return section

    converted, ok = convert(value, hint, table)
    if ok:
        return converted, nested
    if isinstance(value, int) and not isinstance(value, bool) and float in typing.get_args(hint) + (hint,):  # hundreds of digits
        return None, [ConfigError(f"must be a finite number, got {value}", file=file, key=name, fix="write a smaller number")]
    return None, [ConfigError(f"must be {describe(hint)}, got {value!r}", file=file, key=name)]


MAX_CONFIG_BYTES = 1024 * 1024  # systemd/inspectd.toml with every key is 4 KB; a FIFO or /dev/zero is never read


def read_toml(path: Path, *, missing_fix: str, refused_fix: str) -> tuple[dict | None, list[ConfigError]]:
    """A configuration file's table, or the one line that says why there is none. Never more than MAX_CONFIG_BYTES
    read, never a FIFO or a device (files.read_small_file)."""
    try:
        text = read_small_file(path, MAX_CONFIG_BYTES).decode("utf-8")
    except FileNotFoundError:
        return None, [ConfigError("configuration file not found", file=path, fix=missing_fix)]
    except FileRefused as exc:
        return None, [ConfigError(f"{exc}: not a configuration file", file=path, fix=refused_fix)]
    except UnicodeDecodeError as exc:
        return None, [ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=path, fix="save it as UTF-8")]
    except OSError as exc:
        return None, [ConfigError(f"cannot be read ({exc.strerror or exc})", file=path, fix="check its permissions")]
    try:
        return tomllib.loads(text), []
    except ValueError as exc:  # TOMLDecodeError, or an integer of thousands of digits
        return None, [ConfigError(f"not valid TOML ({str(exc).splitlines()[0]})", file=path, fix="fix the syntax")]
    except RecursionError:
        return None, [ConfigError("not valid TOML (arrays or tables nested too deeply)", file=path, fix="fix the syntax")]
