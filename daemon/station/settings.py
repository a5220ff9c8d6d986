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
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import Field, dataclass, field, fields, is_dataclass
from os import PathLike
from typing import Any

from inspectd.daemon.errors import ConfigError, InspectdError


def setting(default: Any, *, above: float | None = None, minimum: float | None = None, choices: tuple[str, ...] | None = None,
            fix: str | None = None) -> Any:
    """A key with its default and limits: ``above`` (exclusive), ``minimum`` (inclusive), ``choices``; ``fix`` tells the user what to write."""
    limits = {name: value for name, value in (("above", above), ("minimum", minimum), ("choices", choices), ("fix", fix)) if value is not None}
    return field(default=default, metadata=limits)


def internal(default: Any) -> Any:
    """A field the program sets, never read from the file."""
    return field(default=default, compare=False, metadata={"internal": True})


@dataclass
class Section:
    """A table of the configuration file. Subclasses add fields and may override ``check``."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            check_limits(spec, getattr(self, spec.name))
        self.check()

    def check(self) -> None:
        """Rules that involve more than one key; raise ConfigError(key=<field name>)."""


def check_limits(spec: Field, value: object) -> None:
    if value is None or isinstance(value, bool):
        return
    limits, key = spec.metadata, spec.name
    fix = limits.get("fix")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"must be a finite number, got {value}", key=key, fix=fix or "write a number")
    if "choices" in limits and value not in limits["choices"]:
        raise ConfigError(f"is {value!r}", key=key, fix=f"use one of: {', '.join(limits['choices'])}")
    if "above" in limits and not value > limits["above"]:
        raise ConfigError(f"must be greater than {limits['above']}, got {value}", key=key, fix=fix)
    if "minimum" in limits and not value >= limits["minimum"]:
        raise ConfigError(f"must be at least {limits['minimum']}, got {value}", key=key, fix=fix)


def located(error: InspectdError, file: str | PathLike | None, where: str = "") -> InspectdError:
    """The same error, naming the file and the full key (``where`` is the table it came from)."""
    if error.file is not None:
        return error
    key = ".".join(part for part in (where, error.key) if part) or None
    return type(error)(error.problem, file=file, key=key, fix=error.fix, exit_code=error.exit_code)


def parse(cls: type, table: object, *, file: str | PathLike, where: str = "", kinds: Any = None) -> Any:
    """A ``cls`` section from a TOML table; ``kinds`` (a Registry) says which other kinds' keys to name in errors."""
    if not isinstance(table, dict):
        raise ConfigError(f"must be a table, got {table!r}", file=file, key=where or None, fix=f"write it as [{where}] with its keys below")
    hints = typing.get_type_hints(cls)
    known = {spec.name: spec for spec in fields(cls) if not spec.metadata.get("internal")}
    values = {}
    for key, value in table.items():
        name = f"{where}.{key}" if where else key
        if key not in known:
            raise _unknown_key(cls, key, name, file, kinds, list(known))
        spec = known[key]
        if "registry" in spec.metadata:
            values[key] = parse_kind(spec.metadata["registry"], value, file=file, where=name)
        else:
            values[key] = _convert(hints[key], value, file, name)
    try:
        return cls(**values)
    except ConfigError as error:
        raise located(error, file, where) from None


def parse_kind(registry: Any, table: object, *, file: str | PathLike, where: str) -> Any:
    """A table whose ``kind`` key chooses its section class from ``registry``."""
    if not isinstance(table, dict):
        raise ConfigError(f"must be a table, got {table!r}", file=file, key=where, fix=f"write it as [{where}] with kind = ... below")
    rest = dict(table)
    kind = rest.pop("kind", registry.default)
    cls = registry.get(kind, file=file, key=f"{where}.kind")
    return parse(cls, rest, file=file, where=where, kinds=registry)


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


def _convert(hint: Any, value: object, file: str | PathLike, name: str) -> object:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None):
            continue
        if is_dataclass(option):
            return parse(option, value, file=file, where=name)
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if typing.get_origin(option) is list:
            if isinstance(value, list) and all(isinstance(item, int) and not isinstance(item, bool) for item in value):
                return value
            continue
        if isinstance(value, option) and (option is bool or not isinstance(value, bool)):
            return value
    wanted = " or ".join(_describe(option) for option in options if option is not type(None))
    raise ConfigError(f"must be {wanted}, got {value!r}", file=file, key=name)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        return "a list of integers"
    if is_dataclass(hint):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(hint, str(hint))
