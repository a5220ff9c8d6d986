"""Run commands in a Raspberry Pi 5 userland (Debian bookworm arm64) under QEMU user mode, for tests.

    reason = ensure_root()
    if reason:
        pytest.skip(reason)
    result = run(["python3", "-c", "import platform; print(platform.machine())"],
                 binds=[(repo_copy, "/src")], cwd="/src")
    assert result.stdout.strip() == "aarch64"

The root comes from .ci/arm64-root.sh (aarch64 binaries run through binfmt_misc and
qemu-aarch64-static) and is never written to: each command runs in a private mount namespace,
on an overlayfs whose upper layer is a tmpfs (so /tmp, /root, pip's cache and the mount points
of the binds vanish afterwards), with /proc, /sys and /dev mounted (OpenVINO's hwloc/TBB crash
without /sys), the host's resolv.conf and CA bundle for pip, and the caller's folders bound in.
Mounts die with the namespace; nothing is mounted on the host, even if the test is killed.

QEMU_CPU=cortex-a76 (the Pi 5's core) by default: qemu's default, "max", also offers SVE,
FHM and other features a Pi does not have, and OpenVINO picks other kernels for them.
Emulation is slow: expect seconds for what takes milliseconds natively.

Host needs: root (mounts, chroot, binfmt_misc), util-linux (unshare, mount), coreutils
(chroot), overlayfs; the script installs qemu-user-static and debootstrap and needs the
Debian mirror.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_ROOT = Path(os.environ.get("INSPECTD_ARM64_ROOT", "/var/cache/inspectd-ci/bookworm-arm64-root"))
SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "arm64-root.sh"
EX_UNUSABLE = 77  # the script's "this host cannot emulate arm64" status
PI5_CPU = "cortex-a76"
ROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}
# The host's network setup, so pip reaches PyPI the way the host does: its resolver, its CA
# bundle (a CI network may intercept TLS with its own CA; Debian's pip trusts this file), and
# its proxy and index settings.
HOST_FILES = ("/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt")
HOST_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
            "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")  # fmt: skip


def ensure_root(root: Path = DEFAULT_ROOT, timeout: float = 3600) -> str | None:
    """Build (first time, several minutes) or reuse the root; None if run() can be used, else why not.

    A failure other than "this host cannot emulate arm64" (no network, a broken mirror)
    raises: that is a broken CI machine, not a reason to skip.
    """
    if os.geteuid() != 0:
        return "needs root for binfmt_misc, mounts and chroot"
    for tool in ("unshare", "mount", "chroot", "bash"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install util-linux coreutils bash)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "overlayfs not available in this kernel"
    proc = subprocess.run(["bash", str(SCRIPT), str(root)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode == EX_UNUSABLE:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"{SCRIPT.name} exited {EX_UNUSABLE}"
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return None


def _setup_script(
    root: Path,
    layer: Path,
    binds: Sequence[tuple[Path, str]],
    binds_ro: Sequence[tuple[Path, str]],
    env: Mapping[str, str],
    cwd: str,
    argv: Sequence[str],
) -> str:
    q = shlex.quote
    merged = f"{layer}/root"
    lines = [
        "set -e",
        f"mount -t tmpfs -o mode=0755 inspectd-arm64 {q(str(layer))}",
        f"mkdir {q(f'{layer}/upper')} {q(f'{layer}/work')} {q(merged)}",
        f"mount -t overlay inspectd-arm64 -o {q(f'lowerdir={root},upperdir={layer}/upper,workdir={layer}/work')} {q(merged)}",
        f"mount -t proc proc {q(merged + '/proc')}",
        f"mount -t sysfs sysfs {q(merged + '/sys')}",
        f"mount --rbind /dev {q(merged + '/dev')}",
    ]
    for path in HOST_FILES:
        if Path(path).is_file():
            lines.append(f"touch {q(merged + path)} && mount --bind -o ro {q(path)} {q(merged + path)}")
    for (src, dst), options in [*((b, "") for b in binds), *((b, "-o ro ") for b in binds_ro)]:
        target = merged + "/" + dst.lstrip("/")
        lines += [f"mkdir -p {q(target)}", f"mount --bind {options}{q(str(src))} {q(target)}"]
    # env and chroot are the host's; /usr/bin/env -C (the cwd) is the first arm64 program.
    command = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "chroot", merged, "/usr/bin/env", "-C", cwd, *argv]
    lines.append("exec " + shlex.join(command))
    return "\n".join(lines)


def run(
    argv: Sequence[str],
    root: Path = DEFAULT_ROOT,
    binds: Sequence[tuple[Path, str]] = (),
    binds_ro: Sequence[tuple[Path, str]] = (),
    cwd: str = "/",
    env: Mapping[str, str] | None = None,
    qemu_cpu: str | None = PI5_CPU,
    input: str | None = None,
    timeout: float = 600,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run argv inside root (emulated arm64), binds as (host folder, path inside); returns its output.

    env is added to a clean PATH/HOME/LANG, the host's proxy/index variables and QEMU_CPU
    (unless qemu_cpu is None, which leaves qemu on its default CPU, "max"). On timeout the
    whole process group is killed and subprocess.TimeoutExpired raised; with check=True a
    non-zero exit raises CalledProcessError.
    """
    inside_env = {**ROOT_ENV, **{k: os.environ[k] for k in HOST_ENV if k in os.environ}}
    if qemu_cpu:
        inside_env["QEMU_CPU"] = qemu_cpu
    inside_env.update(env or {})
    # Only the namespace mounts a tmpfs on it: on the host it stays an empty folder.
    layer = Path(tempfile.mkdtemp(prefix="inspectd-arm64-"))
    script = _setup_script(root, layer, binds, binds_ro, inside_env, cwd, argv)
    try:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # one process group to kill on timeout, pip's children included
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    finally:
        with contextlib.suppress(OSError):
            layer.rmdir()
    result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result
