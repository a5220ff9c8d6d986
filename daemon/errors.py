"""Errors a user can cause and fix, formatted in one place.

Every error names where the problem is (the file, and the key or field inside it), what is
wrong, and the fix; the CLI prints ``inspectd: <file>: <key>: <problem>; <fix>`` on one line
and exits with ``exit_code``, no traceback.

    >>> str(ConfigError("must be positive, got -5", file="/etc/inspectd/inspectd.toml", key="archive.max_mb",
    ...                 fix="set a quota in megabytes, e.g. 500"))
    '/etc/inspectd/inspectd.toml: key archive.max_mb: must be positive, got -5; set a quota in megabytes, e.g. 500'
"""

from __future__ import annotations

from os import PathLike

EX_CONFIG = 78  # sysexits.h: configuration error; the unit does not restart on it


class InspectdError(Exception):
    """A problem the user can fix. ``problem`` alone is enough for a message that carries its own context."""

    exit_code = 2
    key_word = "key"  # how the key is introduced: "key" in a TOML file, "field" in JSON

    def __init__(self, problem: str, *, file: str | PathLike | None = None, key: str | None = None, fix: str | None = None,
                 exit_code: int | None = None) -> None:
        self.problem, self.file, self.key, self.fix = problem, file, key, fix
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(self.format())

    def format(self) -> str:
        where = [str(self.file)] if self.file is not None else []
        if self.key:
            where.append(f"{self.key_word} {self.key}")
        text = ": ".join([*where, self.problem])
        return f"{text}; {self.fix}" if self.fix else text


class ConfigError(InspectdError):
    """The station's configuration (TOML file or command line): exit 78, systemd does not restart."""

    exit_code = EX_CONFIG


class ModelFolderError(InspectdError):
    """A model folder the runtime cannot honour: missing, tampered, malformed, or of another schema version."""

    key_word = "field"


class ModelDoesNotFit(ModelFolderError):
    """The folder's self-test fails on this device even at f32: restarting will not help."""

    exit_code = EX_CONFIG


class SourceError(InspectdError):
    """A frame source or an image file that cannot be read."""


class GpioError(InspectdError):
    """A GPIO chip or line that cannot be used (absent, busy, no permission, wrong bindings)."""
