"""Self-tests that passed, remembered in the state folder so that a restart does not replay them.

A self-test's outcome depends only on the model folder (its files and its inspectd.json: threshold and
limits), the device, the OpenVINO and inspectd versions and the precision asked and run. Each passed
self-test is kept under the sha256 of all of these; a load that finds its key skips the replay (and says
so), one that does not (a re-exported or recalibrated folder, another CPU, an upgrade) replays it. Only
passes are kept: a failing precision is tried again at every load.

Where: ``$STATE_DIRECTORY`` (systemd's StateDirectory=, /var/lib/inspectd for the service), else
``$XDG_STATE_HOME/inspectd`` or ``~/.local/state/inspectd``. A folder that cannot be written, or a
damaged file, only means the self-test runs as before: the memory never stops a load.

    >>> memory = SelfTestMemory.default()                                      # doctest: +SKIP
    >>> model = Model.load("models/demo-mug", memory=memory)  # replays once, then remembers  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from inspectd.daemon.runtime.selftest import SelfTestResult
from inspectd.daemon.schema import METADATA_FILE, ModelFolder

FILE = "selftest-passed.json"
KEEP = 64  # entries kept, newest first: a station sees a handful of folders


@dataclass(frozen=True)
class SelfTestMemory:
    folder: Path

    @classmethod
    def default(cls) -> SelfTestMemory:
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        if state:
            return cls(Path(state))
        xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return cls(Path(xdg) / "inspectd")

    @classmethod
    def of_service(cls) -> SelfTestMemory | None:
        """The service's memory (systemd gives it a StateDirectory), or None when not run by systemd."""
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        return cls(Path(state)) if state else None

    @staticmethod
    def key(folder: ModelFolder, device: str, openvino: str, inspectd: str, requested: str, executed: str) -> str:
        """What a self-test's outcome depends on. The folder's files are named by the sha256s its inspectd.json
        records (checked against the files at every load); the inspectd.json itself by its own bytes."""
        meta = folder.metadata
        files = [entry.sha256 for _, entry in meta.files.entries()]
        metadata = hashlib.sha256((folder.path / METADATA_FILE).read_bytes()).hexdigest()
        text = json.dumps([files, metadata, device, openvino, inspectd, requested, executed])
        return hashlib.sha256(text.encode()).hexdigest()

    def passed(self, key: str) -> SelfTestResult | None:
        """The remembered pass for ``key`` (``remembered_at`` set), or None."""
        entry = self._read().get(key)
        try:
            result = SelfTestResult(**{**entry["result"], "remembered_at": entry["at"]})
        except (TypeError, KeyError):
            return None
        return result if result.passed else None

    def remember(self, key: str, result: SelfTestResult) -> None:
        if not result.passed:
            return
        entries = {key: {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "result": {**asdict(result), "remembered_at": None}}}
        entries |= {k: v for k, v in self._read().items() if k != key}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = self.folder / f".{FILE}.{os.getpid()}.tmp"
            temporary.write_text(json.dumps(dict(list(entries.items())[:KEEP]), indent=1) + "\n", encoding="utf-8")
            os.replace(temporary, self.folder / FILE)
        except OSError:
            pass  # not writable here: the self-test simply runs again next time

    def _read(self) -> dict:
        try:
            data = json.loads((self.folder / FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
