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

import math
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from os import PathLike
from typing import Any

from inspectd.daemon.errors import ConfigError, InspectdError


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


def setting(default: Any, *, above: float | None = None, minimum: float | None = None, maximum: float | None = None,
            choices: tuple[str, ...] | None = None, fix: str | None = None) -> Any:
    """A key with its default and limits: ``above`` (exclusive), ``minimum`` and ``maximum`` (inclusive), ``choices``;
    ``fix`` tells the user what to write."""
    limits = {name: value for name, value in (("above", above), ("minimum", minimum), ("maximum", maximum), ("choices", choices),
                                              ("fix", fix)) if value is not None}
    return field(default=default, metadata=limits)


def internal(default: Any) -> Any:
    """A field the program sets, never read from the file."""
    return field(default=default, compare=False, metadata={"internal": True})


@dataclass
class Section:
    """A table of the configuration file. Subclasses add fields and may override ``check``."""

    def __post_init__(self) -> None:
        errors = [error for spec in fields(self) if (error := limit_error(spec, getattr(self, spec.name)))]
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


def limit_error(spec: Field, value: object) -> ConfigError | None:
    if value is None or isinstance(value, bool):
        return None
    limits, key = spec.metadata, spec.name
    fix = limits.get("fix")
    if isinstance(value, float) and not math.isfinite(value):
        return ConfigError(f"must be a finite number, got {value}", key=key, fix=fix or "write a number")
    if "choices" in limits and value not in limits["choices"]:
        return ConfigError(f"is {value!r}", key=key, fix=f"use one of: {', '.join(limits['choices'])}")
    if "above" in limits and not value > limits["above"]:
        return ConfigError(f"must be greater than {limits['above']}, got {value}", key=key, fix=fix)
    if "minimum" in limits and not value >= limits["minimum"]:
        return ConfigError(f"must be at least {limits['minimum']}, got {value}", key=key, fix=fix)
    if "maximum" in limits and not value <= limits["maximum"]:
        return ConfigError(f"must be at most {limits['maximum']}, got {value}", key=key, fix=fix)
    return _general_limit(key, value, fix)


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
    is built from what is valid and the rules across keys (``check``) still run; None when ``table`` is not a table."""
    if not isinstance(table, dict):
        return None, [ConfigError(f"must be a table, got {table!r}", file=file, key=where or None,
                                  fix=f"write it as [{where}] with its keys below")]
    hints = typing.get_type_hints(cls)
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
            if not found and (error := limit_error(spec, converted)) is not None:
                found = [located(error, file, where)]
        errors += found
        if converted is not None and not (found and not is_dataclass(converted)):
            values[key] = converted  # a nested section keeps its valid keys even when others were set aside
    section = unchecked(cls, values)
    errors += [located(error, file, where) for error in checked(section)]
    return section, distinct(errors)


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
    """``value`` as the type ``hint`` asks for, and the problems found (a nested table's included)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None):
            continue
        if is_dataclass(option):
            return collect(option, value, file=file, where=name)
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value), []
            except OverflowError:  # an integer of hundreds of digits
                return None, [ConfigError(f"must be a finite number, got {value}", file=file, key=name, fix="write a smaller number")]
        if typing.get_origin(option) is list:
            if isinstance(value, list) and all(isinstance(item, int) and not isinstance(item, bool) for item in value):
                return value, []
            continue
        if isinstance(value, option) and (option is bool or not isinstance(value, bool)):
            return value, []
    wanted = " or ".join(_describe(option) for option in options if option is not type(None))
    return None, [ConfigError(f"must be {wanted}, got {value!r}", file=file, key=name)]


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        return "a list of integers"
    if is_dataclass(hint):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(hint, str(hint))
