"""A real Mosquitto broker for tests and benchmarks: a loopback port with a password file, a TLS listener with a
throwaway CA (openssl), persistence (a restart keeps retained messages and persistent sessions' queues).

    with mosquitto(tmp_path) as broker:
        broker.stop(); broker.start()          # an outage
        broker.tls_port, broker.ca, broker.username, broker.password

    with cuttable_path() as path, mosquitto(tmp_path, namespace=path.far, address=path.far_address) as broker:
        ...                                    # the broker in the far namespace; Subscriber(broker) reaches it
                                               # through a unix socket, which a cut of the path leaves alone

Host needs: mosquitto (Debian package: /usr/sbin/mosquitto, mosquitto_passwd), openssl.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
USERNAME, PASSWORD = "station", "s3cret-for-tests"


def unavailable_reason() -> str | None:
    for tool in (MOSQUITTO, "mosquitto_passwd", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install mosquitto openssl)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_certificates(folder: Path, names: tuple[str, ...] = ("localhost",), addresses: tuple[str, ...] = ()) -> dict[str, Path]:
    """A CA and a server certificate it signed (for ``names`` and ``addresses``: by default "localhost" only, so that
    127.0.0.1 is a name the certificate does not hold), plus a second CA that signed nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    run = lambda *argv: subprocess.run(argv, cwd=folder, check=True, capture_output=True)  # noqa: E731
    for ca in ("ca", "other-ca"):
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=inspectd test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={names[0]}", "-keyout", "server.key", "-out", "server.csr")
    alt = ",".join([*(f"DNS:{name}" for name in names), *(f"IP:{address}" for address in addresses)])  # noqa: E501
    (folder / "server.ext").write_text(f"subjectAltName={alt}\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "server.ext", "-out", "server.crt")
    return {name: folder / f"{name}" for name in ("ca.crt", "other-ca.crt", "server.crt", "server.key")}


@dataclass
class Broker:
    folder: Path
    port: int  # plain MQTT, password required
    tls_port: int  # TLS, password required
    ca: Path  # the CA that signed the broker's certificate
    other_ca: Path  # a CA that did not
    address: str = "127.0.0.1"  # where both listeners are
    prefix: tuple[str, ...] = ()  # what runs the broker in another network namespace
    socket: Path | None = None  # a unix socket listener too (for subscribers in another namespace)
    username: str = USERNAME
    password: str = PASSWORD
    proc: subprocess.Popen | None = None

    @property
    def config(self) -> Path:
        return self.folder / "mosquitto.conf"

    @property
    def log(self) -> Path:
        return self.folder / "mosquitto.log"

    def start(self, timeout: float = 10) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.folder / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen([*self.prefix, MOSQUITTO, "-c", str(self.config)], stdout=err, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {(self.folder / 'stderr.log').read_text()[-2000:]}"
                                   f"{self.log.read_text()[-2000:] if self.log.exists() else ''}")
            # Its log, not a probe connection: Mosquitto 2.0.11 miscounts a probe under max_connections.
            if self.log.exists() and "running" in self.log.read_text(errors="replace").split("terminating")[-1]:
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto not listening after {timeout} s")

    def stop(self) -> None:
        """A clean stop (SIGTERM): mosquitto saves its persistence database, as a broker's service stop does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_config(broker: Broker, certificates: dict[str, Path], extra: str = "") -> None:
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(broker.folder / "passwd"), broker.username, broker.password],
                   check=True, capture_output=True)
    os.chmod(broker.folder / "passwd", 0o600)
    broker.config.write_text(f"""\
user root
per_listener_settings false
allow_anonymous false
password_file {broker.folder / 'passwd'}
persistence true
persistence_location {broker.folder}/
max_queued_messages 0
log_dest file {broker.log}
log_type error
log_type warning
log_type notice
log_type information
{f"listener 0 {broker.socket}" if broker.socket else ""}
listener {broker.tls_port} {broker.address}
cafile {certificates['ca.crt']}
certfile {certificates['server.crt']}
keyfile {certificates['server.key']}
listener {broker.port} {broker.address}
{extra}""")


@contextlib.contextmanager
def mosquitto(tmp_path: Path, extra: str = "", namespace=None, address: str = "127.0.0.1") -> Iterator[Broker]:
    """A running broker (stopped afterwards); ``extra`` lines go at the end of its configuration, where they apply to the
    plain listener (e.g. max_connections 1). With ``namespace`` (a netns.Namespace) it runs there, listening on
    ``address`` (its certificate names it too) and on a unix socket for subscribers here."""
    folder = Path(tmp_path) / f"mosquitto-{free_port()}"
    folder.mkdir(parents=True)
    certificates = make_certificates(folder / "tls", addresses=(address,) if namespace is not None else ())
    broker = Broker(folder, free_port(), free_port(), certificates["ca.crt"], certificates["other-ca.crt"], address=address)
    if namespace is not None:
        broker.prefix = tuple(namespace.prefix())
        broker.socket = Path(tempfile.mkdtemp(prefix="mqtt-")) / "sock"  # short: a unix socket path holds 107 bytes at most
    write_config(broker, certificates, extra)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        if broker.socket is not None:
            shutil.rmtree(broker.socket.parent, ignore_errors=True)


@dataclass
class Received:
    topic: str
    payload: bytes
    at: float  # time.time() when it arrived
    retain: bool


class Subscriber:
    """A paho client in a thread of its own, subscribed to ``topic`` at QoS 1 with a persistent session (the broker
    queues what arrives while it is away, and keeps it across its own restart)."""

    def __init__(self, broker: Broker, topic: str = "#", client_id: str = "inspectd-test-subscriber") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Received] = []
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  transport="unix" if broker.socket else "tcp")
        self.client.username_pw_set(broker.username, broker.password)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda client, _u, _f, _rc, _p: client.subscribe(topic, qos=1)
        self.client.on_message = lambda _c, _u, message: self.messages.append(
            Received(message.topic, message.payload, time.time(), bool(message.retain)))
        if broker.socket:
            self.client.connect(str(broker.socket))
        else:
            self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def on(self, suffix: str) -> list[Received]:
        return [message for message in list(self.messages) if message.topic.endswith(suffix)]

    def wait(self, check, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while not (result := check()):
            if time.monotonic() > deadline:
                return result
            time.sleep(0.1)
        return result

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
