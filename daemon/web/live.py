"""The live tap as the page reads it: ``live.json`` when it changes, and the files it names."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from inspectd.daemon.livetap import FILE_NAME, STATE_FILE, STATE_MAX_BYTES, LiveState
from inspectd.daemon.web.files import Refused, read_in


class LiveReader:
    def __init__(self, folder: str | None) -> None:
        self.folder = Path(folder) if folder else None  # None: the station's tap is off
        self.state: LiveState | None = None
        self.problem = ""
        self._seen: tuple[int, int, int] | None = None

    def poll(self) -> bool:
        """Reads live.json if it changed; True when the state changed (a new frame, or the tap gone)."""
        if self.folder is None:
            return False
        try:
            info = os.stat(self.folder / STATE_FILE)
        except OSError:
            changed = self.state is not None
            self.state, self._seen, self.problem = None, None, "no live.json: the station is not running, or its tap is off"
            return changed
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            data = json.loads(read_in(self.folder, STATE_FILE, _STATE)[:STATE_MAX_BYTES])
            state = LiveState.from_json(data)
        except (Refused, ValueError) as exc:  # LiveFormatError is a ValueError: the page says so and goes on
            self.problem = f"{self.folder / STATE_FILE}: {exc}"
            return False
        self.state, self.problem = state, ""
        return True

    def to_json(self, now: float) -> dict[str, object]:
        state = self.state
        return {"folder": str(self.folder) if self.folder else None, "state": state.to_json() if state else None,
                "age_s": None if state is None else max(now - state.time, 0.0), "problem": self.problem}

    def read(self, name: str) -> bytes:
        assert self.folder is not None
        return read_in(self.folder, name, FILE_NAME)


_STATE = re.compile(re.escape(STATE_FILE))
