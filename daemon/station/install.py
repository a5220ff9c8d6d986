"""Installing a new model folder on a station (``inspectd install-model``), safely however the station is running.

1. The new folder is read and verified (every file against its sha256), then compiled and self-tested on this
   device with the station's ``[model]`` settings, and the station's thresholds judged against it: a folder the
   station would refuse is refused here, and nothing changes.
2. The verified bytes (not the files again) are written into a staging folder beside the station's model folder,
   flushed, and read back and verified.
3. The staging folder and the model folder swap names in one step (``renameat2(RENAME_EXCHANGE)``): a station
   starting or reloading at any moment reads the old folder or the new one, never a mix (it reads a folder through
   one descriptor: ``schema.read_model_folder``). The old folder is kept as ``<name>.previous``. Where the
   filesystem cannot exchange, two renames leave the name empty for an instant: a reload then is refused and keeps
   the running model.
4. Every running station that uses the folder (each holds a shared lock on it: ``pipeline.claim_model``) is sent
   SIGHUP, as ``systemctl reload`` does, and each is waited for until it holds the new folder: it runs the new model.
   If no station takes it (each refused the reload, and says why in its journal), the swap is undone.

A running station never reads the model files after it loaded them (``ModelFolder.contents``): files copied over in
place by hand cannot crash it, and a reload during such a copy is refused (the sha256 do not match) and keeps the
running model.
"""

from __future__ import annotations

import copy
import ctypes
import errno
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.files import lock_holders, process_command
from inspectd.daemon.schema import METADATA_FILE, ModelFolder, read_model_folder
from inspectd.daemon.station.config import Config, threshold_errors
from inspectd.daemon.station.pipeline import load_model
from inspectd.daemon.station.settings import raise_all

RENAME_EXCHANGE = 2
AT_FDCWD = -100
POLL_S = 0.2


@dataclass
class Installed:
    target: Path  # the station's model folder (its real path)
    previous: Path | None  # where the folder it replaced is kept
    model_id: str
    precision: str
    asked: list[int] = field(default_factory=list)  # PIDs of the stations sent SIGHUP
    took: list[int] = field(default_factory=list)  # those that run the new model now
    undone: bool = False  # no station took it: the old folder is back


def install(new: str | Path, config: Config, *, reload: bool = True, wait_s: float = 120.0) -> Installed:
    """Verify, self-test, stage, swap, reload (see the module docstring). Raises InspectdError with nothing changed."""
    new_folder = read_model_folder(new)
    trial = copy.copy(config)  # the station's [model] settings, with the new folder (its other rules are not the folder's)
    trial.model = copy.copy(config.model)
    trial.model.path = str(new)
    model = load_model(trial)
    raise_all(threshold_errors(config, model.threshold))
    model_id, precision = model.model_id, model.precision
    del model
    target = Path(os.path.realpath(config.model.path))
    if os.path.realpath(new) == str(target):
        raise InspectdError(f"'{new}' is the station's model folder already", key="model.path", fix="pass the new folder")
    staged = stage(new_folder, target)
    users = folder_users(target)
    previous = swap(staged, target)
    installed = Installed(target, previous, model_id, precision)
    if not reload or not users:
        return installed
    for pid in users:
        try:
            os.kill(pid, signal.SIGHUP)
            installed.asked.append(pid)
        except ProcessLookupError:
            continue
    installed.took = wait_until_taken(target, installed.asked, wait_s)
    if installed.asked and not installed.took and previous is not None:
        swap_back(target, previous)
        installed.undone = True
    return installed


def stage(folder: ModelFolder, target: Path) -> Path:
    """The folder's checked bytes written into ``.<name>.installing-<pid>`` beside ``target``, flushed, read back and
    verified. Owner and mode follow the folder it replaces (the station's user must read it)."""
    staged = target.parent / f".{target.name}.installing-{os.getpid()}"
    try:
        if staged.exists():
            shutil.rmtree(staged)
        staged.mkdir(mode=0o755)
        for name in (METADATA_FILE, *(name for name, _ in folder.metadata.files.entries())):
            descriptor = os.open(staged / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(folder.contents[name])
                while view:
                    view = view[os.write(descriptor, view):]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        _like(staged, target)
        _flush(staged)
        read_model_folder(staged)  # what is on the disk now is what was verified
    except OSError as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise InspectdError(f"cannot be written beside the model folder ({exc.strerror or exc})", file=staged,
                            fix=f"run it as a user that can write {target.parent} (e.g. sudo)") from None
    except InspectdError:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def swap(staged: Path, target: Path) -> Path | None:
    """``staged`` becomes ``target``; the folder that was there is kept as ``<name>.previous`` (returned)."""
    previous = target.with_name(f"{target.name}.previous")
    try:
        if not os.path.lexists(target):
            os.rename(staged, target)
            _flush(target.parent)
            return None
        _clear(previous)
        if exchange(staged, target):
            os.rename(staged, previous)  # the old folder, under the name it is kept by
        else:
            os.rename(target, previous)
            os.rename(staged, target)
        _flush(target.parent)
    except OSError as exc:
        raise InspectdError(f"cannot be put in place ({exc.strerror or exc})", file=target,
                            fix=f"the new folder is staged in {staged}; check the permissions of {target.parent}") from None
    return previous


def swap_back(target: Path, previous: Path) -> None:
    """Undo ``swap``: the previous folder back under the station's name, the new one kept as ``<name>.refused``."""
    refused = target.with_name(f"{target.name}.refused")
    _clear(refused)
    if exchange(previous, target):
        os.rename(previous, refused)
    else:
        os.rename(target, refused)
        os.rename(previous, target)
    _flush(target.parent)


def exchange(a: Path, b: Path) -> bool:
    """Swap two names in one step (Linux renameat2 RENAME_EXCHANGE); False where the filesystem or libc cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def folder_users(folder: Path) -> list[int]:
    """The PIDs of the running stations that use ``folder`` (each holds a shared lock on it)."""
    try:
        return [pid for pid in lock_holders(os.stat(folder)) if pid != os.getpid()]
    except OSError:
        return []


def wait_until_taken(target: Path, pids: list[int], wait_s: float) -> list[int]:
    """Those of ``pids`` that hold the new folder at ``target`` (they reloaded it), waiting up to ``wait_s`` for all."""
    deadline = time.monotonic() + wait_s
    while True:
        took = [pid for pid in folder_users(target) if pid in pids]
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        if set(took) >= set(alive) or time.monotonic() >= deadline:
            return took
        time.sleep(POLL_S)


def describe(pid: int) -> str:
    return f"PID {pid} ({process_command(pid)})"


def _clear(path: Path) -> None:
    """A kept folder (``.previous``, ``.refused``) from an earlier install, removed; anything else there is an error."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not (path / METADATA_FILE).is_file():
        raise InspectdError("is in the way and is not a model folder kept by install-model", file=path, fix="move it elsewhere")
    shutil.rmtree(path)


def _like(staged: Path, target: Path) -> None:
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return
    os.chmod(staged, info.st_mode & 0o7777)
    if os.geteuid() == 0:
        for path in (staged, *staged.iterdir()):
            os.chown(path, info.st_uid, info.st_gid)


def _flush(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems cannot flush a folder: the renames are still atomic
    finally:
        os.close(descriptor)
