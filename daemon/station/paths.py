"""Where the station's files are by default: a module of constants, cheap to import (the CLI reads it before anything else)."""

from pathlib import Path

DEFAULT_PATH = Path("/etc/inspectd/inspectd.toml")  # the station's configuration
