"""``inspectd doctor``: the integrator's first command on a station. One line per check,
PASS, WARN or FAIL, each problem with its fix; exit 1 on any FAIL.

    inspectd doctor                                   # this machine, the default config if there is one
    inspectd doctor --config /etc/inspectd/inspectd.toml --user inspectd
    inspectd doctor --model /var/lib/inspectd/model   # the model folder's self-test at every precision

Checks: 64-bit userland and Python, OpenVINO's CPU plugin and the precisions it runs natively,
the model folder's self-test per precision, cameras (present, readable by the service user),
libgpiod v2 bindings, GPIO chips and the configured lines (present, free, accessible),
journald, the state and archive folders (writable, free space for the archive's quota), and
the Pi's undervoltage and throttling flags (``vcgencmd get_throttled``). Nothing is taken: no
camera is opened and no GPIO line requested.
"""

from __future__ import annotations

import argparse
import glob
import grp
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from inspectd.daemon.runtime.openvino_import import import_openvino
from inspectd.daemon.station.paths import DEFAULT_PATH

SERVICE_USER = "inspectd"
STATE_DIR = Path("/var/lib/inspectd")
# vcgencmd get_throttled bits: now (0-3) and since boot (16-19).
THROTTLE_BITS = {0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
                 16: "under-voltage has occurred", 17: "frequency capping has occurred", 18: "throttling has occurred",
                 19: "soft temperature limit has occurred"}


@dataclass
class Check:
    status: str  # PASS | WARN | FAIL
    what: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:4}  {self.what}: {self.detail}" + (f"; {self.fix}" if self.fix and self.status != "PASS" else "")


def add_to(commands) -> None:
    parser = commands.add_parser("doctor", help="check this machine for the station: PASS/WARN/FAIL per check, with fixes")
    parser.add_argument("--config", metavar="FILE", help=f"check the configured parts too (default: {DEFAULT_PATH} if it exists)")
    parser.add_argument("--model", metavar="DIR", help="model folder to self-test (default: the configured one)")
    parser.add_argument("--user", default=SERVICE_USER, help=f"the service user whose access is checked (default: {SERVICE_USER})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    checks = diagnose(args.config, args.model, args.user)
    for check in checks:
        print(check.line(), flush=True)
    failed = sum(c.status == "FAIL" for c in checks)
    warned = sum(c.status == "WARN" for c in checks)
    print(f"{len(checks)} checks: {len(checks) - failed - warned} passed, {warned} warnings, {failed} failed")
    return 1 if failed else 0


def diagnose(config_path: str | None, model_dir: str | None, user: str) -> list[Check]:
    checks: list[Check] = []
    config = None
    path = Path(config_path) if config_path else (DEFAULT_PATH if DEFAULT_PATH.is_file() else None)
    if path is not None:
        config = _guard(checks, "configuration", lambda: _load_config(path, checks))
    model = Path(model_dir) if model_dir else (Path(config.model.path) if config is not None else None)
    for name, step in (("platform", _platform), ("openvino", _openvino), ("model folder", lambda: _model(model)),
                       ("service user", lambda: _user(user)), ("cameras", lambda: _cameras(user, config)),
                       ("libgpiod", _gpiod_bindings), ("gpio", lambda: _gpio(config, user)), ("journald", _journald),
                       ("storage", lambda: _storage(config, user)), ("power", _throttling)):
        found = _guard(checks, name, step)
        if found:
            checks.extend(found)
    return checks


def _guard(checks: list[Check], name: str, step):
    """Run one step; an unexpected error is its FAIL line, never the end of the report."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - doctor reports, it does not stop
        checks.append(Check("FAIL", name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
        return None


def _load_config(path: Path, checks: list[Check]):
    from inspectd.daemon.errors import InspectdError
    from inspectd.daemon.station.config import load

    try:
        config = load(path)
    except InspectdError as exc:
        checks.append(Check("FAIL", "configuration", str(exc)))
        return None
    checks.append(Check("PASS", "configuration", f"{path}: {config.source.kind} source, {config.trigger.kind} trigger"))
    return config


def _platform() -> list[Check]:
    import platform

    from inspectd.daemon.platform_check import problems

    found = problems()
    if found:
        return [Check("FAIL", "platform", problem) for problem in found]
    libc = " ".join(platform.libc_ver())
    return [Check("PASS", "platform", f"64-bit {os.uname().machine} userland, {libc}, Python {platform.python_version()}")]


def _openvino() -> list[Check]:
    try:
        ov = import_openvino()
    except ImportError as exc:
        return [Check("FAIL", "openvino", f"cannot import it ({exc})", "reinstall inspectd (the .deb, or pip install inspectd)")]
    core = ov.Core()
    if "CPU" not in core.available_devices:
        return [Check("FAIL", "openvino", f"{ov.__version__} has no CPU device (devices: {core.available_devices})",
                      "reinstall openvino for this architecture")]
    capabilities = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    native = ["f32"] + [p for p, c in (("f16", "FP16"), ("bf16", "BF16")) if c in capabilities]
    default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    return [Check("PASS", "openvino", f"{ov.__version__}, CPU plugin on {core.get_property('CPU', 'FULL_DEVICE_NAME')}: runs "
                  f"{', '.join(native)} natively; OpenVINO's own default here {default} (inspectd uses a precision only after "
                  f"the model folder's self-test passed at it)")]


def _model(folder: Path | None) -> list[Check]:
    from inspectd.daemon.errors import InspectdError
    from inspectd.daemon.runtime.model import Model, self_test_every_precision
    from inspectd.daemon.schema import read_model_folder

    if folder is None:
        return [Check("WARN", "model folder", "none given", "pass --model DIR or --config FILE to self-test it")]
    try:
        model_folder = read_model_folder(folder)
    except InspectdError as exc:
        return [Check("FAIL", "model folder", str(exc))]
    meta = model_folder.metadata
    found = [Check("PASS", "model folder", f"{folder}: PaDiM {meta.model.backbone} {meta.input.width}x{meta.input.height}, "
                   f"threshold {meta.threshold.value:.4f}, files intact (sha256)")]
    for trial in self_test_every_precision(model_folder):
        status = "PASS" if trial.passed else ("WARN" if trial.requested != "f32" else "FAIL")
        fix = "the station falls back to a precision that passes" if trial.requested != "f32" else \
            "the folder does not fit this device: re-export it with this inspectd and OpenVINO"
        found.append(Check(status, "model folder", trial.summary(), fix))
    try:
        chosen = Model(model_folder)
        found.append(Check("PASS", "precision", f"'auto' runs this folder at {chosen.precision} here"
                           + (f" ({chosen.fallback})" if chosen.fallback else "")))
    except InspectdError as exc:
        found.append(Check("FAIL", "precision", str(exc)))
    return found


def _user(user: str) -> list[Check]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return [Check("WARN", "service user", f"'{user}' does not exist",
                      "the inspectd package creates it (sysusers.d); or useradd --system --groups video,gpio inspectd")]
    groups = _groups_of(user)
    missing = [g for g in ("video", "gpio") if g not in groups]
    if missing:
        return [Check("WARN", "service user", f"'{user}' (uid {entry.pw_uid}) is not in {', '.join(missing)}",
                      f"usermod -aG {','.join(missing)} {user}")]
    return [Check("PASS", "service user", f"'{user}' (uid {entry.pw_uid}), groups {', '.join(sorted(groups))}")]


def _groups_of(user: str) -> set[str]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return set()
    names = {g.gr_name for g in grp.getgrall() if user in g.gr_mem}
    try:
        names.add(grp.getgrgid(entry.pw_gid).gr_name)
    except KeyError:
        pass
    return names


def _can_use(path: str, user: str, mode: int) -> bool:
    """Whether ``user`` has ``mode`` (os.R_OK | os.W_OK) on ``path`` by its owner, group and other bits.

    Without such a user (not installed yet), for the user running doctor.
    """
    try:
        entry, info = pwd.getpwnam(user), os.stat(path)
    except (KeyError, OSError):
        return os.access(path, mode)
    if entry.pw_uid == 0:
        return True
    if info.st_uid == entry.pw_uid:
        read, write = stat.S_IRUSR, stat.S_IWUSR
    elif _group_name(info.st_gid) in _groups_of(user):
        read, write = stat.S_IRGRP, stat.S_IWGRP
    else:
        read, write = stat.S_IROTH, stat.S_IWOTH
    needed = (read if mode & os.R_OK else 0) | (write if mode & os.W_OK else 0)
    return info.st_mode & needed == needed


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _cameras(user: str, config) -> list[Check]:
    """The camera device nodes (required when the configured source reads one) and the modules the source needs."""
    import importlib.util

    from inspectd.daemon.station.sources import SOURCES

    nodes = sorted(glob.glob("/dev/video*")) + sorted(glob.glob("/dev/media*"))
    source = config.source if config is not None else None
    status = "FAIL" if source is not None and source.camera_device() else "WARN"
    if not nodes:
        found = [Check(status, "cameras", "no /dev/video* or /dev/media* devices",
                       "connect the camera (ribbon cable, or USB), and check `libcamera-hello --list-cameras`")]
    else:
        denied = [n for n in nodes if not _can_use(n, user, os.R_OK | os.W_OK)]
        found = [Check("WARN" if denied else "PASS", "cameras", f"{len(nodes)} device nodes ({', '.join(nodes[:4])}"
                       f"{'...' if len(nodes) > 4 else ''})" + (f"; {user} cannot open {', '.join(denied[:3])}" if denied else
                                                                 f", readable by {user}"),
                       f"add {user} to the video group: usermod -aG video {user}")]
    for kind in SOURCES.names():  # every kind's own modules: required by the configured one, worth knowing for the others
        section = SOURCES.get(kind)
        for module in section.modules:
            wanted = source is not None and source.kind == kind
            if importlib.util.find_spec(module) is None:
                found.append(Check("FAIL" if wanted else "WARN", module, "not importable", section.module_fix))
            else:
                found.append(Check("PASS", module, "importable"))
    return found


def _gpiod_bindings() -> list[Check]:
    try:
        import gpiod
    except ImportError:
        return [Check("WARN", "libgpiod", "no Python bindings", "only needed with [gpio]: the inspectd package bundles gpiod 2.x; "
                      "elsewhere pip install 'gpiod>=2.1'")]
    version = getattr(gpiod, "__version__", "?")
    if not hasattr(gpiod, "LineSettings"):
        return [Check("FAIL", "libgpiod", f"the 'gpiod' module found ({version}, {gpiod.__file__}) is the v1 API (Bookworm's "
                      f"python3-libgpiod)", "use the inspectd package's /usr/bin/inspectd (it bundles v2), or pip install 'gpiod>=2.1'")]
    return [Check("PASS", "libgpiod", f"v2 bindings {version} ({Path(gpiod.__file__).parent})")]


def _gpio(config, user: str) -> list[Check]:
    from inspectd.daemon.gpio.libgpiod import list_chips
    from inspectd.daemon.gpio.reservations import Reservations

    try:
        chips = list_chips()
    except Exception as exc:  # noqa: BLE001 - a chip listing that fails is a WARN line, not the end of the report
        return [Check("WARN", "gpio", f"cannot list chips ({str(exc).splitlines()[0]})")]
    gpio = config.gpio if config is not None else None
    if gpio is not None and gpio.chip == "memory":
        return [Check("WARN", "gpio", "the configuration uses the in-memory chip: no real reject or ready line",
                      "set [gpio] chip = \"pinctrl-rp1\" on a Pi 5")]
    if not chips:
        return [Check("FAIL" if gpio is not None else "WARN", "gpio", "no /dev/gpiochip* devices",
                      "a Raspberry Pi kernel has them; remove [gpio] to run without GPIO")]
    found = []
    for chip in chips:
        if chip.error:
            found.append(Check("WARN", "gpio", f"{chip.path}: {chip.error}"))
            continue
        access = "" if _can_use(chip.path, user, os.R_OK | os.W_OK) else f"; {user} cannot open it"
        found.append(Check("WARN" if access else "PASS", "gpio chip", f"{chip.path} ({chip.name}, label '{chip.label}', "
                           f"{len(chip.lines)} lines){access}", f"add {user} to the gpio group: usermod -aG gpio {user}"))
    if gpio is None:
        return found
    chip = next((c for c in chips if gpio.chip in (c.name, c.path, c.label)), None)
    if chip is None:
        found.append(Check("FAIL", "gpio.chip", f"no chip '{gpio.chip}' here", f"use one of: {', '.join(c.label or c.name for c in chips)}"))
        return found
    taken = Reservations()
    for key, name in config.gpio_lines():
        line = next((each for each in chip.lines if str(name) in (each.name, str(each.offset))), None)
        holder = taken.reserve(line.offset, key) if line is not None else None
        if line is None:
            found.append(Check("FAIL", key, f"no line '{name}' on {chip.name}", "`inspectd doctor` above lists the chips; use a line name like GPIO17"))
        elif holder is not None:
            found.append(Check("FAIL", key, f"'{name}' is offset {line.offset}, the line of {holder}", "each line can be used once"))
        elif line.used:
            found.append(Check("FAIL", key, f"'{name}' (offset {line.offset}) is in use by {line.consumer or 'the kernel'}",
                               "stop what holds it, or choose another line"))
        else:
            found.append(Check("PASS", key, f"'{name}' is offset {line.offset} on {chip.name}, free"))
    return found


def _journald() -> list[Check]:
    import importlib.util

    if not os.path.exists("/run/systemd/journal/socket"):
        return [Check("WARN", "journald", "no journal socket (/run/systemd/journal/socket): records go to stderr",
                      "run the station under systemd (a container or chroot has no journald)")]
    if importlib.util.find_spec("systemd") is None:
        return [Check("WARN", "journald", "systemd-python is not importable: records go to stderr", "apt install python3-systemd")]
    return [Check("PASS", "journald", "socket present, systemd-python importable: records go to the journal")]


def _storage(config, user: str) -> list[Check]:
    found = []
    archive = Path(config.archive.path) if config is not None and config.archive.enabled else None
    for folder in dict.fromkeys(p for p in (STATE_DIR, archive) if p is not None):
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
        writable = _can_use(str(existing), user, os.W_OK)
        who = user if _user_exists(user) else f"{pwd.getpwuid(os.getuid()).pw_name} (no user {user} yet)"
        found.append(Check("PASS" if writable else "FAIL", "storage", f"{folder}" + ("" if existing == folder else
                           f" (not there yet; {existing} is where it would be made)") + f": {'writable' if writable else 'not writable'} by {who}",
                           f"the package's tmpfiles.d makes {STATE_DIR}; chown {user} it"))
    if archive is not None:
        existing = next(p for p in (archive, *archive.parents) if p.exists())
        free = shutil.disk_usage(existing).free / 2**20
        quota = config.archive.max_mb
        status = "PASS" if free >= 2 * quota else ("WARN" if free >= quota else "FAIL")
        found.append(Check(status, "archive space", f"{free:.0f} MB free for an archive quota of {quota:g} MB",
                           "lower archive.max_mb or free the disk"))
    return found


def _throttling() -> list[Check]:
    if shutil.which("vcgencmd") is None:
        return [Check("PASS", "power", "no vcgencmd (not a Raspberry Pi OS): undervoltage and throttling not checked")]
    result = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
    value = int(result.stdout.strip().split("=")[-1], 16)
    flags = [text for bit, text in THROTTLE_BITS.items() if value & (1 << bit)]
    if not flags:
        return [Check("PASS", "power", "no undervoltage or throttling since boot (get_throttled=0x0)")]
    now = any(value & (1 << bit) for bit in range(4))
    return [Check("FAIL" if now else "WARN", "power", f"get_throttled={value:#x}: {', '.join(flags)}",
                  "use the official 27 W supply and cooling; throttling slows inspection below line rate")]

