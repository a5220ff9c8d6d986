"""A real systemd-journald in a private mount namespace, for tests.

    with private_journald(tmp_path) as jd:
        jd.run_inside(["logger", "--journald"], stdin=subprocess.PIPE).communicate(b"MESSAGE=hi\n")
        records = jd.read_records(SYSLOG_IDENTIFIER="logger")

Inside the namespace a fresh tmpfs hides the host's /run (so nothing is created on the host),
and folders under tmp_path are bound over /run/systemd/journal (the sockets clients write to)
and /run/log/journal (the volatile store), plus files over /etc/systemd/journald.conf and
/etc/machine-id. Mounts die with the namespace; nothing is mounted on the host.

Host needs: root (CAP_SYS_ADMIN), util-linux (unshare, nsenter), systemd (systemd-journald,
journalctl). Python clients need systemd-python (Debian: python3-systemd; PyPI: systemd-python,
which builds against libsystemd-dev + pkg-config).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

JOURNALD = Path("/lib/systemd/systemd-journald")

# Rate limiting is off so bursts in tests are never dropped; kmsg/audit/forwarding are off so
# the test journal holds only what the test sent and the host is left alone.
JOURNALD_CONF = """\
[Journal]
Storage=volatile
RateLimitIntervalSec=0
RateLimitBurst=0
ReadKMsg=no
Audit=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
"""

_SETUP = """\
set -e
mount -t tmpfs -o mode=0755 inspectd-test-run /run
mkdir -p /run/systemd/journal /run/log/journal
mount --bind "$1" /run/systemd/journal
mount --bind "$2" /run/log/journal
mount --bind "$3" /etc/systemd/journald.conf
if [ -e /etc/machine-id ]; then mount --bind "$4" /etc/machine-id; fi
exec "$5"
"""


def unavailable_reason() -> str | None:
    """Why a private journald cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to unshare a mount namespace"
    for tool in ("unshare", "nsenter", "journalctl", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install util-linux systemd)"
    if not JOURNALD.exists():
        return f"{JOURNALD} not found (apt-get install systemd)"
    if not Path("/etc/systemd/journald.conf").exists():
        return "/etc/systemd/journald.conf missing: nothing to bind the test config over"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "probe", "/mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot mount in a private mount namespace: {probe.stderr.strip()}"
    return None


@dataclass
class PrivateJournald:
    pid: int
    machine_id: str
    socket_dir: Path
    store_root: Path
    log_path: Path
    _children: list[subprocess.Popen] = field(default_factory=list)
    _slice: Path | None = None

    @property
    def store(self) -> Path:
        """The folder holding system.journal: the machine-id folder journald made."""
        made = [p for p in self.store_root.iterdir() if p.is_dir()]
        for folder in made:
            if folder.name == self.machine_id:
                return folder
        if len(made) != 1:
            raise RuntimeError(f"expected one machine-id folder in {self.store_root}, found {made}")
        return made[0]

    def run_inside(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        unit: str | None = None,
        netns: str | None = None,
        **popen_kwargs,
    ) -> subprocess.Popen:
        """Start argv in journald's mount namespace (so /run/systemd/journal is the test one).

        With unit="inspectd.service" the process runs in a cgroup of that name, so journald
        stamps _SYSTEMD_UNIT on its records and applies per-unit rate limiting, as under systemd.
        With netns (a /proc/PID/ns/net path) it runs in that network namespace too.
        """
        prefix: list[str] = []
        if unit is not None:
            cgroup = self._unit_cgroup(unit)
            prefix = ["sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && exec "$@"', "join-cgroup"]
        proc = subprocess.Popen(
            ["nsenter", f"--mount=/proc/{self.pid}/ns/mnt", *([f"--net={netns}"] if netns else []), "--", *prefix, *argv],
            env=dict(env) if env is not None else None,
            **popen_kwargs,
        )
        self._children.append(proc)
        return proc

    def _unit_cgroup(self, unit: str) -> Path:
        if self._slice is None:
            # journald takes the unit name from the cgroup path and skips *.slice parents.
            self._slice = _cgroup2_root() / f"inspectd-test-{self.machine_id[:12]}.slice"
            self._slice.mkdir()
        cgroup = self._slice / unit
        cgroup.mkdir(exist_ok=True)
        return cgroup

    def _remove_cgroups(self) -> None:
        if self._slice is None:
            return
        for cgroup in [*self._slice.iterdir(), self._slice]:
            if not cgroup.is_dir():
                continue
            # Anything a test process left behind (double forks) goes with its cgroup.
            if (cgroup / "cgroup.kill").exists():
                (cgroup / "cgroup.kill").write_text("1")
            deadline = time.monotonic() + 5
            while True:
                try:
                    cgroup.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def sync(self) -> None:
        """Block until journald has written everything it has received (journalctl --sync)."""
        proc = self.run_inside(["journalctl", "--sync"], stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"journalctl --sync failed: {err.decode(errors='replace')}")

    def read_records(self, *, sync: bool = True, **filters: str) -> list[dict]:
        """Records from the store, oldest first; filters are journalctl matches (FIELD=value)."""
        if sync:
            self.sync()
        matches = [f"{key}={value}" for key, value in filters.items()]
        out = subprocess.run(
            ["journalctl", "--no-pager", "-D", str(self.store), "-o", "json", *matches],
            capture_output=True,
            check=True,
        ).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_for_records(self, count: int, timeout: float = 10.0, **filters: str) -> list[dict]:
        """read_records until at least count match, or timeout; returns the last read."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.read_records(**filters)
            if len(records) >= count or time.monotonic() > deadline:
                return records
            time.sleep(0.05)


def _cgroup2_root() -> Path:
    # Unified hosts mount cgroup2 on /sys/fs/cgroup, hybrid ones on /sys/fs/cgroup/unified.
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mountpoint, fstype, *_ = line.split()
        if fstype == "cgroup2":
            return Path(mountpoint)
    raise RuntimeError("no cgroup2 hierarchy mounted: run_inside(unit=...) needs one")


def _wait_ready(notify: socket.socket, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    # journald sends READY=1 over $NOTIFY_SOCKET once its sockets and journal file are open.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"systemd-journald exited with {proc.returncode}: {log_path.read_text(errors='replace')}"
            )
        notify.settimeout(0.1)
        try:
            message = notify.recv(4096).decode(errors="replace")
        except TimeoutError:
            continue
        if "READY=1" in message.split("\n"):
            return
    raise RuntimeError(f"systemd-journald not ready after {timeout} s: {log_path.read_text(errors='replace')}")


@contextlib.contextmanager
def private_journald(
    tmp_path: Path, conf: str = JOURNALD_CONF, timeout: float = 10.0
) -> Iterator[PrivateJournald]:
    machine_id = uuid.uuid4().hex
    base = Path(tmp_path) / f"journald-{machine_id[:8]}"
    socket_dir, store_root = base / "run-systemd-journal", base / "run-log-journal"
    for folder in (socket_dir, store_root):
        folder.mkdir(parents=True)
    conf_path = base / "journald.conf"
    conf_path.write_text(conf)
    machine_id_file = base / "machine-id"
    machine_id_file.write_text(machine_id + "\n")
    log_path = base / "journald.log"

    # An abstract socket: no path-length limit, nothing to clean up.
    notify_addr = f"\0inspectd-test-journald-{machine_id}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_addr)
    # journald's own log goes to our log file instead of the host's /dev/kmsg.
    env = {**os.environ, "NOTIFY_SOCKET": "@" + notify_addr[1:], "SYSTEMD_LOG_TARGET": "console"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", _SETUP, "setup",
             str(socket_dir), str(store_root), str(conf_path), str(machine_id_file), str(JOURNALD)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    journald = PrivateJournald(proc.pid, machine_id, socket_dir, store_root, log_path)
    try:
        _wait_ready(notify, proc, log_path, timeout)
        yield journald
    finally:
        notify.close()
        for child in journald._children:
            if child.poll() is None:
                child.kill()
            child.wait()
        journald._remove_cgroups()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
