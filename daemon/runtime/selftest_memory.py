"""A self-test's outcome remembered on this device: a load replays the self-test only when something it depends on changed.

One small JSON record per key, in the state directory (``$STATE_DIRECTORY``, the unit's StateDirectory; else
``$XDG_CACHE_HOME/inspectd`` or ``~/.cache/inspectd``), folder ``selftest-memory``. The key is everything a self-test's
outcome depends on: the folder's metadata as loaded (it holds the sha256 of model.xml, model.bin and selftest.npz, the
threshold and the limits), the device's name, capabilities and CPUs, the OpenVINO build, the compile configuration
(with the precision asked) and the self-test's own rule (``selftest.py``'s sha256, numpy's and OpenCV's versions); the
record adds the precision the compiled model executed. A record that does not match exactly (another key, a truncated, foreign or oversized
file, a record of another shape) is a miss: the self-test runs, as it would with no memory at all. Memory that cannot
be read or written never stops a load; it costs the replay and one note (``trouble``).

    >>> memory = SelfTestMemory(Path(tempfile.mkdtemp()))                        # doctest: +SKIP
    >>> key = memory_key(folder, "CPU", "Intel(R) Xeon(R)", ["FP32"], "2026.4.1", {"INFERENCE_PRECISION_HINT": "f32"})  # doctest: +SKIP
    >>> memory.recall(key) is None                                               # doctest: +SKIP
    True
    >>> memory.remember(key, result); memory.recall(key).remembered             # doctest: +SKIP
    '2026-12-07 13:40 UTC'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from inspectd.daemon.runtime import selftest
from inspectd.daemon.runtime.selftest import SelfTestResult
from inspectd.daemon.schema import ModelFolder

FOLDER = "selftest-memory"
KIND = "inspectd self-test memory, version 1"
MAX_RECORD_BYTES = 64 * 1024  # a record is about 1 KB; anything larger is not one
MAX_RECORDS = 64  # the oldest go first: a record per folder, precision and OpenVINO build met here
RESULT_TYPES = {"requested": str, "executed": str, "frames": int, "max_score_error": float, "max_map_error": float, "flips": int,
                "limit": float, "problem": (str, type(None)), "seconds": float}


def default_folder() -> Path | None:
    """The state directory's memory folder: the unit's StateDirectory for the station, the user's cache otherwise."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / FOLDER
    cache = os.environ.get("XDG_CACHE_HOME", "")
    try:
        base = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"
    except RuntimeError:  # no home to find
        return None
    return base / "inspectd" / FOLDER


def rule_digest() -> str:
    """The self-test's rule as this inspectd runs it: a changed selftest.py (limits, checks), or another numpy or OpenCV
    under it (the coarse maps), replays every self-test."""
    digest = hashlib.sha256(Path(selftest.__file__).read_bytes())
    digest.update(f"numpy {np.__version__}, opencv {cv2.__version__}".encode())
    return digest.hexdigest()


def memory_key(folder: ModelFolder, device: str, device_name: str, capabilities, openvino_version: str, config: dict) -> dict | None:
    """What a self-test's outcome depends on; None when the folder's bytes were not checked against their sha256."""
    meta = folder.metadata
    if any(name not in folder.contents for name, _ in meta.files.entries()):
        return None  # read without its sha256 checked (or a draft): its files could be anything
    metadata = json.dumps(meta.to_json(), sort_keys=True, separators=(",", ":"))
    return {"metadata_sha256": hashlib.sha256(metadata.encode("utf-8")).hexdigest(), "model_bin_sha256": meta.files.model_bin.sha256,
            "device": device, "device_name": device_name, "capabilities": sorted(capabilities),
            "cpus": len(os.sched_getaffinity(0)), "openvino": openvino_version,
            "compile": {str(k): str(v) for k, v in sorted(config.items())}, "rule_sha256": rule_digest()}


class SelfTestMemory:
    """Records in ``folder``; ``trouble`` says (once) why they could not be read or kept."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.trouble: str | None = None

    @classmethod
    def default(cls) -> SelfTestMemory:
        return cls(default_folder())

    def _path(self, key: dict) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
        return self.folder / f"{digest}.json"

    def _folder_is_ours(self) -> bool:
        """Only a folder of this user's that no one else may write holds records worth believing."""
        info = os.lstat(self.folder)
        return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)

    def recall(self, key: dict | None) -> SelfTestResult | None:
        """The result remembered for exactly ``key`` (``remembered`` says when it ran); None for anything else."""
        if key is None or self.folder is None:
            return None
        try:
            if not self._folder_is_ours():
                return self._miss(f"{self.folder} is not a folder of this user's that only it may write")
            descriptor = os.open(self._path(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            with open(descriptor, "rb") as handle:
                info = os.fstat(descriptor)
                if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                        or info.st_size > MAX_RECORD_BYTES):
                    return None
                record = json.loads(handle.read(MAX_RECORD_BYTES + 1))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError):  # unreadable, truncated, not JSON: as if there were no record
            return None
        return _result(record, key)

    def _miss(self, why: str) -> None:
        self.trouble = self.trouble or why
        return None

    def remember(self, key: dict | None, result: SelfTestResult) -> None:
        """Keep ``result`` for ``key``, replacing the file whole (a temporary file, fsync, rename)."""
        if key is None or self.folder is None:
            return
        record = {"kind": KIND, "key": key, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "result": {name: _plain(getattr(result, name), kind) for name, kind in RESULT_TYPES.items()}}
        temporary = None
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self._folder_is_ours():
                return self._miss(f"{self.folder} is not a folder of this user's that only it may write")
            descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=".record-", suffix=".tmp")
            with open(descriptor, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self._path(key))
            temporary = None
            self._forget_oldest()
        except OSError as exc:
            self._miss(f"cannot keep a record in {self.folder} ({exc.strerror or exc})")
        finally:
            if temporary:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass

    def _forget_oldest(self) -> None:
        records = sorted(self.folder.glob("*.json"), key=lambda path: path.stat().st_mtime)
        for path in records[:-MAX_RECORDS]:
            path.unlink(missing_ok=True)


def _plain(value, kind):
    """numpy's numbers as JSON's."""
    return value if value is None or kind not in (int, float) else kind(value)


def _result(record, key: dict) -> SelfTestResult | None:
    """The record's result if it is exactly a record for ``key``, of the shape this inspectd writes."""
    if not isinstance(record, dict) or record.get("kind") != KIND or record.get("key") != key or not isinstance(record.get("when"), str):
        return None
    result = record.get("result")
    if not isinstance(result, dict) or set(result) != set(RESULT_TYPES):
        return None
    for name, kind in RESULT_TYPES.items():
        value = result[name]
        if isinstance(value, bool) or not isinstance(value, kind) and not (kind is float and isinstance(value, int)):
            return None
    if result["requested"] != key["compile"].get("INFERENCE_PRECISION_HINT"):
        return None
    values = {name: float(value) if RESULT_TYPES[name] is float else value for name, value in result.items()}
    return dataclasses.replace(SelfTestResult(**values), remembered=record["when"])
