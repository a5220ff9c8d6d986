"""One field machinery for the files inspectd reads: the station's TOML configuration (``station.settings``) and a
model folder's ``inspectd.json`` (``schema``).

A key is a dataclass field declared with ``setting``: its type is the annotation, its default and its limits
are beside it. ``problem`` says in one line what is wrong with a value (its type, then its limits) and
``convert`` turns a parsed TOML or JSON value into the field's Python type; each file's reader adds the
file and the key's full name to the error and chooses how many problems it reports.

    >>> from dataclasses import dataclass, fields
    >>> @dataclass
    ... class Lamp:
    ...     pulse_ms: float = setting(100.0, above=0, fix="a pulse length in milliseconds, e.g. 100")
    >>> spec = fields(Lamp)[0]
    >>> problem(spec, float("nan"), float)
    ('must be a finite number, got nan', 'a pulse length in milliseconds, e.g. 100')
    >>> problem(spec, "fast", float)
    ("must be a number, got 'fast'", 'a pulse length in milliseconds, e.g. 100')
    >>> problem(spec, -1.0, float)
    ('must be greater than 0, got -1.0', 'a pulse length in milliseconds, e.g. 100')
    >>> convert(3, float), convert([1, 2], tuple[int, int]), convert("3", float)
    ((3.0, True), ((1, 2), True), ('3', False))
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import MISSING, Field, field, is_dataclass
from types import UnionType
from typing import Any, get_args, get_origin

Check = Callable[[Any], "str | None"]  # a limit of its own: what is wrong with a value already of the field's type, or None


def setting(default: Any = MISSING, *, checks: tuple[Check, ...] = (), above: float | None = None, minimum: float | None = None,
            maximum: float | None = None, choices: tuple[str, ...] | None = None, fix: str | None = None, json_name: str | None = None,
            null: bool = False, added: bool = False) -> Any:
    """A key with its default and limits: ``above`` (exclusive), ``minimum`` and ``maximum`` (inclusive), ``choices``, and
    ``checks`` of its own; ``fix`` tells the user what to write. For JSON files: ``json_name`` when it is not the
    attribute's, ``null`` to write None as null, ``added`` for a key added within a version (absent: its default)."""
    limits = {"above": above, "minimum": minimum, "maximum": maximum, "choices": choices, "fix": fix, "json": json_name}
    metadata = {name: value for name, value in limits.items() if value is not None} | {"checks": checks, "null": null, "added": added}
    return field(default=default, metadata=metadata)


def internal(default: Any) -> Any:
    """A field the program sets, never read from a file."""
    return field(default=default, compare=False, metadata={"internal": True})


def problem(spec: Field, value: Any, hint: Any, *, table: str = "a table", shown: Callable[[Any], str] = repr
            ) -> tuple[str, str | None] | None:
    """What is wrong with ``value`` for the field ``spec`` of type ``hint``, and its fix; None when nothing is.
    ``table`` and ``shown`` are the file's words: what a nested section is called, how a value is spelled."""
    fix = spec.metadata.get("fix")
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {shown(value)}", fix or "write a number"
    if isinstance(value, (tuple, list)) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
        return f"must hold only finite numbers, got {shown(value)}", fix
    if not fits(value, hint):
        return f"must be {describe(hint, table)}, got {shown(value)}", fix
    if value is None:
        return None
    limits = spec.metadata
    if "choices" in limits and value not in limits["choices"]:
        return f"is {value!r}", f"use one of: {', '.join(limits['choices'])}"
    for name, holds, words in (("above", lambda v, limit: v > limit, "greater than"), ("minimum", lambda v, limit: v >= limit, "at least"),
                               ("maximum", lambda v, limit: v <= limit, "at most")):
        if name in limits and not isinstance(value, bool) and not holds(value, limits[name]):
            return f"must be {words} {limits[name]}, got {value}", fix
    found = next((text for check in limits.get("checks", ()) if (text := check(value))), None)
    return (found, fix) if found else None


def options(hint: Any) -> tuple:
    return get_args(hint) if isinstance(hint, UnionType) else (hint,)


def items(hint: Any, count: int) -> tuple:
    """The item types of a sequence hint for ``count`` items: list[int], tuple[str, ...] or tuple[int, int]."""
    args = get_args(hint)
    if get_origin(hint) is list or args[-1] is Ellipsis:
        return args[:1] * count
    return args


def fits(value: Any, hint: Any) -> bool:
    """``value`` is of type ``hint`` (a number is never a boolean; a float is finite)."""
    if isinstance(hint, UnionType):
        return any(fits(value, option) for option in get_args(hint))
    origin = get_origin(hint)
    if origin in (tuple, list):
        return (isinstance(value, origin) and len(items(hint, len(value))) == len(value)
                and all(fits(v, h) for v, h in zip(value, items(hint, len(value)))))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is None or hint is type(None):
        return value is None
    return isinstance(value, hint)


def convert(value: Any, hint: Any, nested: Callable[[type, Any], Any] | None = None) -> tuple[Any, bool]:
    """A parsed TOML or JSON value as the field's Python type (a list as a tuple, 3 as 3.0, a table or object as a
    section through ``nested``) and whether it converted; what does not convert is returned as it is."""
    for option in options(hint):
        if option is type(None):
            continue
        if isinstance(option, type) and is_dataclass(option):
            if isinstance(value, dict) and nested is not None:
                return nested(option, value), True
            continue
        origin = get_origin(option)
        if origin in (tuple, list) and isinstance(value, list):
            wanted = items(option, len(value))
            if len(wanted) != len(value):
                continue
            converted = [convert(v, h) for v, h in zip(value, wanted)]
            if all(ok for _, ok in converted):
                return origin(v for v, _ in converted), True
            continue
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value), True
            except OverflowError:  # an integer of hundreds of digits
                continue
        if fits(value, option):
            return value, True
    return value, False


def describe(hint: Any, table: str = "a table") -> str:
    """The type in words, for 'must be ...': ``table`` is what the file calls a nested section ("an object" in JSON)."""
    names = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings"),
             bool: ("true or false", "booleans"), type(None): ("null", "nulls")}
    if isinstance(hint, UnionType):
        return " or ".join(describe(option, table) for option in get_args(hint) if option is not type(None) or table != "a table")
    if get_origin(hint) in (tuple, list):
        args = get_args(hint)
        count = "" if get_origin(hint) is list or args[-1] is Ellipsis else f"{len(args)} "
        return f"a list of {count}{names.get(args[0], ('', 'objects'))[1]}"
    if isinstance(hint, type) and is_dataclass(hint):
        return table
    return names.get(hint, (str(hint),))[0]


def show_json(value: Any) -> str:
    """A value as JSON spells it, at most 40 characters."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."
