"""Boot a real systemd in a systemd-nspawn container, for tests of the unit file.

    with booted_container(Path("/var/cache/inspectd-ci/bookworm-root")) as box:
        box.write_file("/etc/systemd/system/x.service", UNIT)
        box.run(["systemctl", "start", "x.service"])
        box.reboot()                           # systemctl reboot, then the same root and overlay booted again

The root comes from .ci/nspawn-root.sh and is never written to: the container runs on an
overlayfs whose upper layer lives in a temp dir and is deleted afterwards. The overlay and a
tmpfs on /run/systemd (where nspawn keeps its state) are mounted in a private mount namespace,
so nothing is mounted on the host. The host need not run systemd: --register=no and
--keep-unit keep nspawn off D-Bus, and nspawn runs in a cgroup of its own (removed afterwards)
rather than the host's root cgroup, where it would otherwise create supervisor/ and payload/.
Commands run inside with nsenter into the container's PID 1: they join its namespaces but not
its cgroups, so use systemd-run inside when a command must run as a unit.

Host needs: root, systemd-container (systemd-nspawn), util-linux, overlayfs, cgroup2 mounted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path(os.environ.get("INSPECTD_NSPAWN_ROOT", "/var/cache/inspectd-ci/bookworm-root"))
ROOT_STAMP = ".inspectd-root-complete"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_SETUP = """\
set -e
for cgroup in $CGROUPS; do echo $$ > "$cgroup/cgroup.procs"; done
state=/run/systemd; [ -d "$state" ] || state=/run
mount -t tmpfs -o mode=0755 inspectd-nspawn-state "$state"
mount -t overlay inspectd-nspawn-root -o "lowerdir=$ROOT,upperdir=$TMP/upper,workdir=$TMP/work" "$TMP/merged"
exec systemd-nspawn "--directory=$TMP/merged" "$@"
"""


def unavailable_reason(root: Path = DEFAULT_ROOT) -> str | None:
    """Why a container cannot boot here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root for systemd-nspawn"
    for tool in ("systemd-nspawn", "unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install systemd-container util-linux)"
    if not (root / ROOT_STAMP).exists():
        return f"no complete container root at {root}: run .ci/nspawn-root.sh first"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "overlayfs not available in this kernel"
    if _cgroup_mount("cgroup2") is None:
        return "no cgroup2 hierarchy mounted (systemd in the container needs one)"
    return None


def _cgroup_mount(fstype: str, option: str | None = None) -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mountpoint, kind, options, *_ = line.split()
        if kind == fstype and (option is None or option in options.split(",")):
            return Path(mountpoint)
    return None


@dataclass
class Container:
    name: str
    nspawn_pid: int
    leader_pid: int
    log_path: Path
    nspawn: subprocess.Popen | None = None
    launch: Callable[[], tuple[subprocess.Popen, int]] | None = None  # boots the same root and overlay again

    def popen(self, argv: Sequence[str], **popen_kwargs) -> subprocess.Popen:
        """Start argv inside the container (all its namespaces, its root, a clean env)."""
        return subprocess.Popen(
            ["nsenter", f"--target={self.leader_pid}", "--all", "--root", "--wd",
             "env", "-i", f"PATH={CONTAINER_PATH}", "LANG=C.UTF-8", *argv],
            **popen_kwargs,
        )  # fmt: skip

    def run(
        self, argv: Sequence[str], input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = self.popen(
            argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode} in {self.name}: {err.strip()}")
        return result

    def write_file(self, path: str, content: str, mode: int = 0o644) -> None:
        self.run(["sh", "-c", f'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod {mode:o} "$1"', "write", path],
                 input=content)  # fmt: skip

    def reboot(self, timeout: float = 120) -> None:
        """``systemctl reboot`` inside: systemd stops every unit, journald flushes, and systemd-nspawn exits with 133,
        which asks its supervisor to start the container again (systemd-nspawn@.service's RestartForceExitStatus=133);
        as that supervisor, boot the same root with the same overlay (its /var, /etc, journal) again and wait for it."""
        assert self.nspawn is not None and self.launch is not None
        self.run(["systemctl", "reboot"], check=False)
        try:
            code = self.nspawn.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} did not reboot within {timeout} s") from None
        if code != 133:
            raise RuntimeError(f"systemd-nspawn exited {code} on reboot, not 133: {self.log_path.read_text(errors='replace')[-2000:]}")
        self.nspawn, self.leader_pid = self.launch()
        self.nspawn_pid = self.nspawn.pid
        self.wait_until_booted(timeout=timeout)

    def wait_until_booted(self, timeout: float = 60) -> str:
        """Wait for `systemctl is-system-running` to say running or degraded; return which."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            # Fails until PID 1 has its private socket up; --wait then blocks until boot ends.
            result = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                              timeout=max(1.0, deadline - time.monotonic()))  # fmt: skip
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.2)
        console = self.log_path.read_text(errors="replace")[-3000:]
        raise TimeoutError(f"{self.name} not booted after {timeout} s (state {state!r}); console:\n{console}")


def _find_leader(nspawn: subprocess.Popen, log_path: Path, timeout: float) -> int:
    # The container's PID 1 is the child of systemd-nspawn that runs in another PID namespace
    # and has exec'ed systemd.
    own_pidns = os.readlink("/proc/self/ns/pid")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {nspawn.returncode}: {log_path.read_text(errors='replace')}")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid != nspawn.pid or os.readlink(entry / "ns/pid") == own_pidns:
                    continue
                if (entry / "comm").read_text().strip() == "systemd":
                    return int(entry.name)
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.05)
    raise TimeoutError(f"no container init under systemd-nspawn {nspawn.pid}: {log_path.read_text(errors='replace')}")


def _make_cgroups(name: str) -> list[Path]:
    # On hybrid hosts nspawn also moves itself in the name=systemd v1 hierarchy, so both get one.
    roots = [_cgroup_mount("cgroup2"), _cgroup_mount("cgroup", "name=systemd")]
    cgroups = [root / f"inspectd-nspawn-{name}" for root in roots if root is not None]
    for cgroup in cgroups:
        cgroup.mkdir()
    return cgroups


def _remove_cgroups(cgroups: list[Path]) -> None:
    for top in cgroups:
        if (top / "cgroup.kill").exists():
            (top / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + 10
        while top.exists():
            # Depth first: the container's systemd leaves payload/, supervisor/ and its own tree.
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            try:
                top.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@contextlib.contextmanager
def booted_container(
    root: Path = DEFAULT_ROOT,
    binds_ro: Sequence[tuple[Path, str]] = (),
    extra_args: Sequence[str] = (),
    boot_timeout: float = 60,
) -> Iterator[Container]:
    """Boot root (read-only; changes go to a throwaway overlay) and yield a running Container."""
    name = f"inspectd-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    for part in ("upper", "work", "merged"):
        (tmp / part).mkdir()
    log_path = tmp / "console.log"
    nspawn_args = [
        "--boot", "--quiet", f"--machine={name}", "--register=no", "--keep-unit",
        "--private-network", "--console=read-only",
        *(f"--bind-ro={src}:{dst}" for src, dst in binds_ro), *extra_args,
    ]  # fmt: skip
    cgroups = _make_cgroups(name)
    env = {**os.environ, "ROOT": str(root), "TMP": str(tmp), "CGROUPS": " ".join(map(str, cgroups))}

    def launch() -> tuple[subprocess.Popen, int]:
        with open(log_path, "ab") as log:
            nspawn = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", _SETUP, "setup", *nspawn_args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        box.nspawn = nspawn  # stopped in the end even when it never boots
        return nspawn, _find_leader(nspawn, log_path, timeout=boot_timeout)

    box = Container(name, 0, 0, log_path, launch=launch)
    try:
        box.nspawn, box.leader_pid = launch()
        box.nspawn_pid = box.nspawn.pid
        box.wait_until_booted(timeout=boot_timeout)
        yield box
    finally:
        nspawn = box.nspawn
        if nspawn is not None and nspawn.poll() is None:
            # nspawn turns SIGTERM into an orderly poweroff of the container.
            nspawn.send_signal(signal.SIGTERM)
            try:
                nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                nspawn.kill()
                nspawn.wait()
        _remove_cgroups(cgroups)
        shutil.rmtree(tmp, ignore_errors=True)
