"""What ``inspectd check`` and ``inspectd run`` verify before anything starts: every part ``run`` builds, built or
looked at without side effects, and every problem reported at once.

- the file: every key (``config.read``);
- the model folder: loaded, compiled and self-tested, as ``run`` loads it;
- the source: a replayed folder's (or video file's) first frame through the ROI, and the ROI against every
  image's header; a camera or stream is not opened (a running daemon may hold it), and that is said;
- the GPIO chip and each configured line: present and free, read from the chip's line info (no line requested);
- the archive folder: creatable and writable, judged on the nearest folder that exists (nothing created);
- the frame size limit against this machine's memory.
- the drift watch: on, or off and why (a model folder without normal scores);
- the first frame judged by the model and the rule, as ``run`` will judge it (its colour mode, its size).

A part is looked at only when its table has no error (its defaults stand in for what was set aside, and
judging those would report problems the file does not have).

    >>> report = preflight("/etc/inspectd/inspectd.toml")   # doctest: +SKIP
    >>> report.errors, report.notes                         # doctest: +SKIP
    ([], ['source: camera not opened: ...', ...])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from inspectd.daemon.errors import ConfigError, InspectdError
from inspectd.daemon.files import Claim, Held
from inspectd.daemon.runtime.decision import Rule
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.station.config import Config, read, threshold_errors
from inspectd.daemon.station.devices import check_gpio
from inspectd.daemon.station.drift import drift_watch
from inspectd.daemon.station.outputs.archive import OWN_FOLDER_FIX
from inspectd.daemon.station.outputs.archive_files import judge
from inspectd.daemon.station.pipeline import load_model
from inspectd.daemon.station.settings import distinct, every, located, raise_all
from inspectd.daemon.station.sources import DirectoryConfig, Frame

# Memory one frame pixel costs from its file to its verdict (decode, crop, resize, map, archive copy): issue 9
# measured 2.3 GB for a 12000x12000 PNG, 16 bytes a pixel. source.max_pixels must fit this machine at that rate.
BYTES_PER_PIXEL = 16
VIRTUAL_FILESYSTEMS = {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs",
                       "bpf", "pstore", "efivarfs", "mqueue", "hugetlbfs", "fusectl", "autofs", "binfmt_misc"}


@dataclass
class Report:
    config: Config | None
    errors: list[ConfigError]
    notes: list[str] = field(default_factory=list)  # what was looked at, or not and why; one line each
    model: Model | None = None
    rule: Rule | None = None  # the decision rule the station would apply (config.rule)
    frame: Frame | None = None  # the source's first frame, where check could take one


def preflight(path: str | Path, *, daemon_may_run: bool = True) -> Report:
    """Every configuration error ``run`` would meet with the file at ``path``. ``daemon_may_run``: lines held by an
    inspectd are expected (``check`` before a reload); ``run`` needs them free."""
    config, errors = read(path)
    report = Report(config, list(errors))
    if config is None:
        return report
    broken = [error.key or "" for error in errors]

    def clean(*keys: str) -> bool:
        return not any(bad == key or bad.startswith(f"{key}.") or key.startswith(f"{bad}.") for bad in broken for key in keys)

    # A key set aside holds its default, which these judge harmlessly (no line, no minimum area, no ROI).
    parts = [("model", clean("model.path", "model.device", "model.precision"), _model), ("source", clean("source"), _source(daemon_may_run)),
             ("gpio", clean("gpio.chip", "gpio.reject.line", "gpio.ready.line"), _gpio_lines(daemon_may_run)),
             ("archive", clean("archive.path", "archive.enabled", "archive.max_mb"), _archive(daemon_may_run)),
             ("source.max_pixels", clean("source.max_pixels"), _memory), ("drift", clean("drift"), _drift),
             ("source", clean("source", "model.path", "model.device", "model.precision", "decision"), _first_frame_judged)]
    for table, wanted, part in parts:
        if wanted:
            try:
                part(config, report)
            except InspectdError as error:
                report.errors += [as_config_error(each, config) for each in every(error)]
            except OSError as exc:  # a path the machine refuses to even look at (a name too long...)
                report.errors.append(ConfigError(f"cannot be checked ({exc.strerror or exc}: {exc.filename!r})", file=config.file,
                                                 key=table, fix="check the paths in this table"))
    report.errors = distinct(report.errors)
    return report


def as_config_error(error: InspectdError, config: Config) -> ConfigError:
    """Any problem found here is one of the configuration: exit 78 (restarting the service would not fix it)."""
    if isinstance(error, ConfigError):
        return located(error, config.file)  # type: ignore[return-value]
    return ConfigError(error.problem, file=error.file or config.file, key=error.key, fix=error.fix)


def _model(config: Config, report: Report) -> None:
    model = load_model(config)
    report.model = model
    report.rule = config.rule(model.threshold)
    raise_all(threshold_errors(config, model.threshold))


def _drift(config: Config, report: Report) -> None:
    """Whether drift is watched, and why not (a folder without normal scores is a note, not an error)."""
    if report.model is None:
        return
    report.notes.append(drift_watch(config.drift, getattr(report.model.folder.metadata, "normal_scores", None))[1])


def _source(daemon_may_run: bool):
    def check(config: Config, report: Report) -> None:
        _look_at_source(config, report)
        source = config.source
        if isinstance(source, DirectoryConfig) and source.mode == "watch":
            _free(Path(source.path), "the watched folder", "source.path", daemon_may_run, report)
    return check


def _free(path: Path, what: str, key: str, daemon_may_run: bool, report: Report) -> None:
    """A folder one station holds alone (its lock): free for ``run``; held by a running inspectd is expected by ``check``."""
    try:
        Claim.take(path, what).release()
    except FileNotFoundError:
        return
    except Held as held:
        if daemon_may_run and "inspectd" in str(held):
            report.notes.append(f"{key}: {held} (the running station)")
            return
        raise ConfigError(f"{held}: one station per {what.removeprefix('the ')}", key=key,
                          fix="stop that process, or give this station a folder of its own") from None


def _look_at_source(config: Config, report: Report) -> None:
    """Each kind knows what can be checked of it without disturbing a running daemon (``SourceConfig.preflight``)."""
    frame = report.frame = config.source.preflight(report.notes)
    if frame is None:
        return
    height, width = frame.pixels.shape[:2]
    if config.decision.min_defect_area > width * height:
        raise ConfigError(f"{config.decision.min_defect_area} pixels is more than the {width}x{height} frame has: no part would "
                          "ever be rejected", key="decision.min_defect_area", fix=f"at most {width * height}; 0 = off")


def _first_frame_judged(config: Config, report: Report) -> None:
    """The first frame through the model and the rule, as ``run`` will judge it: a frame the model cannot take (a gray
    camera on a colour model, a frame smaller than the model's crop) would fault every frame and never make the station ready."""
    if report.frame is None or report.model is None or report.rule is None:
        return
    try:
        inspection = report.model.infer(report.frame.pixels, report.frame.name)
        report.rule.judge()(inspection.score, inspection.anomaly_map)
    except InspectdError as error:
        raise ConfigError(f"its first frame cannot be judged: {error}", key="source",
                          fix="make the source give what the model folder was trained on, or use a model folder trained on it") from None


def _gpio_lines(daemon_may_run: bool):
    def check(config: Config, report: Report) -> None:
        report.notes += check_gpio(config, daemon_may_run=daemon_may_run)
    return check


def _archive(daemon_may_run: bool):
    def check(config: Config, report: Report) -> None:
        _look_at_archive(config, report)
        if config.archive.enabled:
            problem = judge(Path(config.archive.path))
            if problem:
                raise ConfigError(problem, key="archive.path", fix=OWN_FOLDER_FIX)
            _free(Path(config.archive.path), "the archive folder", "archive.path", daemon_may_run, report)
    return check


def _look_at_archive(config: Config, report: Report) -> None:
    archive = config.archive
    if not archive.enabled:
        report.notes.append("archive: off")
        return
    path = Path(archive.path).absolute()
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    what = "the archive folder" if existing == path else f"{existing}, where it would be created,"
    if not existing.is_dir():
        raise ConfigError(f"{what} is not a folder", key="archive.path", fix="point it to a folder")
    wanted = os.R_OK | os.W_OK | os.X_OK if existing == path else os.W_OK | os.X_OK
    filesystem = filesystem_type(existing)
    if filesystem in VIRTUAL_FILESYSTEMS:
        raise ConfigError(f"{what} is on the kernel's {filesystem} filesystem, which holds no files", key="archive.path",
                          fix="use a folder on the disk, e.g. /var/lib/inspectd/rejects")
    stats = os.statvfs(existing)
    if stats.f_flag & os.ST_RDONLY:
        raise ConfigError(f"{what} is on a read-only filesystem", key="archive.path", fix="use a writable folder, e.g. /var/lib/inspectd/rejects")
    if not os.access(existing, wanted):
        raise ConfigError(f"{what} is not writable by this user (uid {os.getuid()})", key="archive.path",
                          fix="fix its owner or permissions, or use the service's state folder /var/lib/inspectd/rejects")
    disk_mb = stats.f_blocks * stats.f_frsize / 2**20
    if archive.max_mb > disk_mb:
        raise ConfigError(f"{archive.max_mb:g} MB is more than the whole filesystem of {existing} ({disk_mb:.0f} MB): the quota "
                          "would never apply and the disk would fill", key="archive.max_mb", fix=f"at most {disk_mb * 0.8:.0f}")
    free_mb = stats.f_bavail * stats.f_frsize / 2**20
    state = "exists" if existing == path else f"will be created in {existing}"
    report.notes.append(f"archive: {path} {state}, writable; quota {archive.max_mb:g} MB, {free_mb:.0f} MB free on its filesystem")


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` is on ("ext4", "proc"...), from /proc/self/mountinfo; "" when unknown."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    real, best, kind = os.path.realpath(path), "", ""
    for line in mounts:
        fields, _, rest = line.partition(" - ")
        point = fields.split()[4].replace("\\040", " ")
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, rest.split()[0]
    return kind


def _memory(config: Config, report: Report) -> None:
    needed = config.source.max_pixels * BYTES_PER_PIXEL
    memory = memory_limit()
    if needed > memory:
        raise ConfigError(f"{config.source.max_pixels} pixels a frame would take about {needed / 2**30:.1f} GB from file to verdict, "
                          f"more than the {memory / 2**30:.1f} GB this process may use", key="source.max_pixels",
                          fix=f"at most {memory // BYTES_PER_PIXEL}; the camera's frame size is enough")


def memory_limit() -> int:
    """This machine's memory, or the service's ceiling (its cgroup's memory.max) when lower."""
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        group = Path("/proc/self/cgroup").read_text().splitlines()[0].split(":", 2)[2]
        ceiling = Path(f"/sys/fs/cgroup{group}/memory.max").read_text().strip()
    except (OSError, IndexError):
        return memory
    return min(memory, int(ceiling)) if ceiling.isdigit() else memory
