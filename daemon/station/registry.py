"""The kinds of a station part (sources, triggers): ``kind = "..."`` in its table chooses one.

Each kind is one config section class with a ``kind`` name; the class carries the kind's
keys, defaults and limits and opens the part. The choices an error lists come from here.

    >>> from inspectd.daemon.station.triggers import TRIGGERS
    >>> TRIGGERS.names()
    ['continuous', 'interval', 'gpio']
    >>> TRIGGERS.get("gpio").__name__, TRIGGERS.having("interval_ms")
    ('GpioTriggerConfig', ['interval'])
"""

from __future__ import annotations

from dataclasses import field, fields
from os import PathLike
from typing import Any

from inspectd.daemon.errors import ConfigError


class Registry:
    def __init__(self, part: str, *sections: type) -> None:
        """``part`` names what is chosen ("source"); the first section is the default kind."""
        self.part = part
        self.sections = {section.kind: section for section in sections}
        self.default = sections[0].kind

    def names(self) -> list[str]:
        return list(self.sections)

    def get(self, kind: object, *, file: str | PathLike | None = None, key: str | None = None) -> type:
        if not isinstance(kind, str) or kind not in self.sections:
            raise ConfigError(f"{kind!r} is not a {self.part} kind", file=file, key=key, fix=f"use one of: {', '.join(self.sections)}")
        return self.sections[kind]

    def having(self, key: str) -> list[str]:
        """The kinds that have ``key``, to say where a misplaced key belongs."""
        return [kind for kind, section in self.sections.items() if key in {spec.name for spec in fields(section)}]

    def create_default(self) -> Any:
        return self.sections[self.default]()

    def field(self) -> Any:
        """The dataclass field of a Config table chosen from this registry."""
        return field(default_factory=self.create_default, metadata={"registry": self})
