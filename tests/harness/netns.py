"""A network path between two network namespaces the test makes itself, joined by a veth pair, that the test can cut
and restore: the far end's link goes down, so packets vanish without a reset or an error on either side (a pulled
cable, a dead switch), the case where only a protocol's keepalive notices the connection is gone.

    with cuttable_path() as path:
        path.far.popen(["mosquitto", ...])           # listens on path.far_address
        path.near.popen(["inspectd", "publish", ...])  # connects to path.far_address
        path.cut(); path.restore()

Nothing is made in the host's network namespace: each namespace is held by a process of its own (unshare --net), the
veth ends are created directly inside them, and everything goes when the holders are killed.

Host needs: root (CAP_NET_ADMIN, CAP_SYS_ADMIN), util-linux (unshare, nsenter), iproute2 (ip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

NEAR_ADDRESS, FAR_ADDRESS = "192.0.2.1", "192.0.2.2"  # TEST-NET-1: never routed anywhere real


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install util-linux iproute2)"
    probe = subprocess.run(["unshare", "--net", "ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a veth pair in a network namespace: {probe.stderr.strip()}"
    return None


@dataclass
class Namespace:
    holder: subprocess.Popen  # a process that keeps the namespace alive

    @property
    def path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    def prefix(self) -> list[str]:
        """What runs a command in this namespace (and nothing else of the holder's)."""
        return ["nsenter", f"--net={self.path}", "--"]

    def popen(self, argv: Sequence[str], **popen_kwargs) -> subprocess.Popen:
        return subprocess.Popen([*self.prefix(), *argv], **popen_kwargs)

    def ip(self, *args: str) -> None:
        subprocess.run([*self.prefix(), "ip", *args], check=True, capture_output=True)


@dataclass
class Path:
    near: Namespace
    far: Namespace
    near_address: str = NEAR_ADDRESS
    far_address: str = FAR_ADDRESS

    def cut(self) -> None:
        """The far end's link down: what the near side sends is dropped on the wire, nothing is answered."""
        self.far.ip("link", "set", "far", "down")

    def restore(self) -> None:
        self.far.ip("link", "set", "far", "up")


def _namespace() -> Namespace:
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"], stdin=subprocess.DEVNULL)
    namespace = Namespace(holder)
    for _ in range(200):  # unshare has made the namespace once the holder's differs from ours
        if os.path.exists(namespace.path) and os.readlink(namespace.path) != os.readlink("/proc/self/ns/net"):
            return namespace
        if holder.poll() is not None:
            raise RuntimeError(f"unshare --net exited {holder.returncode}")
        time.sleep(0.01)
    raise RuntimeError("unshare --net made no namespace")


@contextlib.contextmanager
def cuttable_path() -> Iterator[Path]:
    near = far = None
    try:
        near, far = _namespace(), _namespace()
        subprocess.run(["ip", "link", "add", "near", "netns", str(near.holder.pid), "type", "veth", "peer", "name", "far", "netns",
                        str(far.holder.pid)], check=True, capture_output=True)
        path = Path(near, far)
        for namespace, device, address in ((near, "near", path.near_address), (far, "far", path.far_address)):
            namespace.ip("link", "set", "lo", "up")
            namespace.ip("address", "add", f"{address}/24", "dev", device)
            namespace.ip("link", "set", device, "up")
        yield path
    finally:
        for namespace in (near, far):
            if namespace is not None:
                namespace.holder.kill()
                namespace.holder.wait()
