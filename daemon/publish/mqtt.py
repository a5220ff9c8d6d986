"""One connection to the MQTT broker (paho-mqtt, MQTT 3.1.1, QoS 1), driven by the publisher's own loop.

A connection is a fresh paho client: when one breaks, whatever it had in flight is forgotten here and the
publisher reads the journal again from the last acknowledged record, so nothing depends on a client's memory
(which a kill -9 would lose anyway). The client id is fixed per station: a restarted publisher takes over its old
session at once, and the broker does not later publish the old connection's last will over the new ``online``.

Every way a connection fails is one line: what failed, where, and the fix (``LinkError``).

A connection can also die in silence: a network cut drops the packets without a reset, and the kernel would retransmit
for a quarter of an hour before it gave up. MQTT's keepalive bounds that: while messages await their acknowledgement,
nothing acknowledged for keepalive_s ends the connection (which also covers a broker that answers pings but no longer
acknowledges); idle, paho pings after keepalive_s of silence and ends it when keepalive_s more pass without an answer.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from inspectd.daemon.publish.config import MqttConfig
from inspectd.daemon.publish.messages import Message

CONNECT_TIMEOUT_S = 10.0
CONNACK_REASONS = {  # paho gives MQTT 3.1.1's CONNACK return codes as MQTT 5 reason codes
    132: ("the broker refused MQTT 3.1.1", "use a broker that speaks MQTT 3.1.1 or 5 (Mosquitto >= 1.3)"),
    133: ("the broker refused the client id", "another client may use inspectd-publish-<station>: give each station its own id"),
    134: ("the broker refused the user name or password", "check mqtt.username and the password (credential mqtt-password)"),
    # Mosquitto answers a wrong password with this one too.
    135: ("the broker refused this client: not authorized (a wrong user name or password, or the broker's ACL)",
          "check mqtt.username and the password (credential mqtt-password), and that the broker lets this user connect"),
    136: ("the broker is unavailable (it refused new connections)", "the broker may be full or starting: retried"),
    137: ("the broker is busy", "retried"),
    151: ("the broker's quota is exceeded (it is full)", "raise the broker's limits, or retried"),
}


class LinkError(Exception):
    """A connection that could not be made or broke, in one line: ``problem; fix``."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem}; {fix}")


@dataclass
class Sent:
    mid: int
    tag: object  # what the publisher needs back when it is acknowledged (the record's position), or None
    at: float  # when it was handed to the connection (monotonic)


def client_id(station: str) -> str:
    return f"inspectd-publish-{station}"[:64]


class Link:
    def __init__(self, config: MqttConfig, station: str, will: Message, password: str | None) -> None:
        self.config, self.station, self.will, self.password = config, station, will, password
        self.where = f"mqtt{'s' if config.tls else ''}://{config.host}:{config.broker_port}"
        self.client = None
        self.connected = False
        self.sent: deque[Sent] = deque()
        self.acked: set[int] = set()
        self.heard = 0.0  # when the broker last acknowledged a message, or accepted the connection (monotonic)
        self.lost: LinkError | None = None

    # ------------------------------------------------------------------ connecting

    def connect(self) -> None:
        """Connects and waits for the broker's CONNACK; LinkError on every failure."""
        import paho.mqtt.client as mqtt

        config = self.config
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(self.station),
                             clean_session=True, protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.max_inflight_messages_set(0)  # the publisher keeps its own window
        client.max_queued_messages_set(0)
        if config.username:
            client.username_pw_set(config.username, self.password)
        if config.tls:
            client.tls_set(ca_certs=config.tls_ca_file, certfile=config.tls_cert_file or None, keyfile=config.tls_key_file or None,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(self.will.topic, self.will.payload, qos=1, retain=True)
        answer: list[int] = []
        client.on_connect = lambda _c, _u, _flags, reason, _p: answer.append(reason.value if hasattr(reason, "value") else int(reason))
        client.on_publish = lambda _c, _u, mid, _reason, _p: self._acknowledged(mid)
        client.on_disconnect = lambda _c, _u, _flags, reason, _p: self._dropped(silent=str(reason) == "Keep alive timeout")
        try:
            client.connect(config.host, config.broker_port, keepalive=round(config.keepalive_s))
        except Exception as exc:  # noqa: BLE001 - each kind of failure is named below
            raise self.failure(exc) from None
        self.client, self.lost = client, None
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not answer and self.lost is None and time.monotonic() < deadline:
            self.step(0.1)
        if answer and answer[0] == 0:
            self.connected, self.heard = True, time.monotonic()
            return
        self.close()
        if answer:
            problem, fix = CONNACK_REASONS.get(answer[0], (f"the broker refused the connection (code {answer[0]})", "see the broker's log"))
            raise LinkError(f"{self.where}: {problem}", fix)
        if self.lost is not None:
            raise self.lost
        raise LinkError(f"{self.where}: no CONNACK within {CONNECT_TIMEOUT_S:g} s", "is this port an MQTT broker's?")

    def failure(self, exc: BaseException) -> LinkError:
        where, config = self.where, self.config
        if isinstance(exc, socket.gaierror):
            return LinkError(f"{where}: {config.host} cannot be resolved ({exc.strerror})", "check mqtt.host and this machine's DNS")
        if isinstance(exc, ssl.SSLCertVerificationError) or isinstance(exc, ssl.CertificateError):
            detail = getattr(exc, "verify_message", None) or str(exc)
            return LinkError(f"{where}: TLS: the broker's certificate is not trusted ({detail})",
                             f"tls_ca_file ({config.tls_ca_file}) must be the CA that signed it, and the certificate must name "
                             f"{config.host} (subjectAltName)")
        if isinstance(exc, ssl.SSLError):
            return LinkError(f"{where}: TLS handshake failed ({exc.reason or exc})",
                             "is TLS on at this port (8883 usually), and does the broker accept this client's certificate?")
        if isinstance(exc, ConnectionRefusedError):
            return LinkError(f"{where}: connection refused: no broker listens there", "check mqtt.host and mqtt.port, and that the broker runs")
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return LinkError(f"{where}: no answer within {CONNECT_TIMEOUT_S:g} s", "check the address and the network (a firewall?)")
        if isinstance(exc, ConnectionResetError) or (isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)):
            return self.closed_early()
        if isinstance(exc, OSError):
            return LinkError(f"{where}: cannot be reached ({exc.strerror or exc})", "check the address and the network")
        return LinkError(f"{where}: {type(exc).__name__}: {exc}", "see the broker's log")

    def closed_early(self) -> LinkError:
        tls = "" if self.config.tls else ", expects TLS on this port"
        return LinkError(f"{self.where}: the broker closed the connection before accepting it",
                         f"it may be full (max_connections){tls}, or refuse this client: see the broker's log")

    def silent(self) -> LinkError:
        return LinkError(f"{self.where}: no answer from the broker for {self.config.keepalive_s:g} s (keepalive_s)",
                         "the network or the broker failed without closing the connection")

    def _dropped(self, silent: bool = False) -> None:
        if self.lost is None:
            if silent:
                self.lost = self.silent()
            elif self.connected:
                self.lost = LinkError(f"{self.where}: the connection was lost", "the broker stopped or the network failed: retried")
            else:
                self.lost = self.closed_early()
        self.connected = False

    def _acknowledged(self, mid: int) -> None:
        self.acked.add(mid)
        self.heard = time.monotonic()

    # ------------------------------------------------------------------ the loop's turns

    def fileno(self) -> int | None:
        sock = self.client.socket() if self.client is not None else None
        return sock.fileno() if sock is not None else None

    def step(self, timeout: float, readable: bool | None = None) -> None:
        """One turn of network work: read what came, write what waits, keep alive. ``readable`` None: wait for it."""
        client = self.client
        if client is None:
            return
        sock = client.socket()
        if sock is None:
            self._dropped()
            return
        if readable is None:
            wanted = [sock] if client.want_write() else []
            readable = bool(select.select([sock], wanted, [], timeout)[0])
        if readable or getattr(sock, "pending", lambda: 0)():
            client.loop_read()
        if self.client is not None and client.want_write():
            client.loop_write()
        if self.client is not None:
            client.loop_misc()  # paho's keepalive: pings when idle, ends a connection whose pings go unanswered
        if self.connected and self.sent and time.monotonic() - max(self.sent[0].at, self.heard) >= self.config.keepalive_s:
            self._dropped(silent=True)  # messages wait and nothing was acknowledged for keepalive_s

    def wants_write(self) -> bool:
        return self.client is not None and self.client.want_write()

    def publish(self, message: Message, tag: object = None) -> None:
        assert self.client is not None
        info = self.client.publish(message.topic, message.payload, qos=1, retain=message.retain)
        self.sent.append(Sent(info.mid, tag, time.monotonic()))

    def acknowledged(self) -> list[object]:
        """The tags of the messages acknowledged in order since the last call (stops at the first not yet acknowledged)."""
        done = []
        while self.sent and self.sent[0].mid in self.acked:
            sent = self.sent.popleft()
            self.acked.discard(sent.mid)
            done.append(sent.tag)
        return done

    def in_flight(self) -> int:
        return len(self.sent)

    def close(self, goodbye: Message | None = None, before: Callable[[Link], None] | None = None) -> None:
        """Ends the connection; with ``goodbye`` (the retained ``offline``) sent first, when still connected, and
        ``before`` called once it is acknowledged (or 2 s passed): the broker acknowledges in order, so every message
        sent before it is acknowledged too, and ``before`` can take them (the position saved at the stop is then the
        newest delivered)."""
        client = self.client
        if client is None:
            return
        try:
            if goodbye is not None and self.connected:
                info = client.publish(goodbye.topic, goodbye.payload, qos=1, retain=goodbye.retain)
                deadline = time.monotonic() + 2.0
                while not info.is_published() and time.monotonic() < deadline and client.socket() is not None:
                    client.loop(0.1)
                if before is not None:
                    before(self)
            self.client = None
            client.disconnect()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
        finally:
            self.client = None
            self.connected = False
            self.sent.clear()
            self.acked.clear()
