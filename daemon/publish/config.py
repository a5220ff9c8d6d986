"""The publisher's configuration: its own file (/etc/inspectd/publish.toml), apart from the station's, parsed into
sections over the one field machinery (``fields.setting``; the station's ``settings`` reads the tables) and checked
as a whole before anything connects. Every problem is one line naming the file, the key and the fix; ``inspectd publish --check`` prints them
all and exits 78 (EX_CONFIG), which the unit does not restart.

    >>> config = load("systemd/publish.toml")                # the shipped example, from the repository's root
    >>> config.mqtt.host, config.mqtt.broker_port, config.metrics.listen
    ('localhost', 1883, '0.0.0.0:9811')
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.fields import internal, setting
from inspectd.daemon.station.settings import Section, collect, raise_all, read_toml

DEFAULT_PATH = Path("/etc/inspectd/publish.toml")
CREDENTIAL = "mqtt-password"  # LoadCredential=mqtt-password:... in inspectd-publish.service
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # one MQTT topic level, and a host name's first label
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine by its name or address alone (no DNS: a name could be made to point anywhere)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_station() -> str:
    """The host name's first label: what a station is called when the file does not say."""
    return socket.gethostname().split(".")[0]


@dataclass
class MqttConfig(Section):
    host: str = setting("localhost", fix="the broker's host name or address")
    port: int = setting(0, minimum=0, maximum=65535, fix="the broker's port; 0: 8883 with TLS, 1883 without")
    topic_prefix: str = setting("inspectd", fix="one topic level, e.g. inspectd: topics are <prefix>/<station>/verdict, ...")
    username: str = ""
    password_file: str = ""  # default: the systemd credential mqtt-password, when the unit loads one
    tls_ca_file: str = ""  # the CA certificate(s) the broker's certificate must chain to; set: TLS
    tls_cert_file: str = ""  # a client certificate, for brokers that ask for one (with tls_key_file)
    tls_key_file: str = ""
    allow_plaintext: bool = False  # without TLS only a broker on this machine is accepted, unless this is true
    keepalive_s: float = setting(15.0, minimum=5, fix="a connection that died in silence (a network cut) is noticed within this many "
                                                     "seconds while records wait, twice that when idle; the broker says offline "
                                                     "after 1.5x; e.g. 15")
    retry_max_s: float = setting(60.0, above=0, fix="the longest wait between connection attempts, e.g. 60")
    home_assistant: bool = False  # Home Assistant MQTT discovery (homeassistant/...): a reject sensor, score and reject rate
    file: str = internal("")  # the configuration file, for messages about the files named here

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca_file)

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    def check(self) -> None:
        errors = []
        if not NAME.fullmatch(self.topic_prefix):
            errors.append(ConfigError(f"is {self.topic_prefix!r}", key="topic_prefix",
                                      fix="one topic level of letters, digits, '_', '.', '-' (no '/', '+', '#')"))
        if not self.tls and not self.allow_plaintext and not is_loopback(self.host):
            errors.append(ConfigError(f"is empty, and {self.host} is not this machine: the password and every verdict would cross "
                                      "the network in plain text", key="tls_ca_file",
                                      fix="set tls_ca_file to the CA certificate that signed the broker's, or allow_plaintext = true "
                                          "on a network you trust"))
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            errors.append(ConfigError("needs both tls_cert_file and tls_key_file", key="tls_cert_file" if not self.tls_cert_file else "tls_key_file",
                                      fix="set both (a client certificate and its key) or neither"))
        if (self.tls_cert_file or self.tls_key_file) and not self.tls:
            errors.append(ConfigError("a client certificate without tls_ca_file", key="tls_cert_file",
                                      fix="set tls_ca_file too: a client certificate is only sent over TLS"))
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file", "password_file"):
            path = getattr(self, key)
            if path and (problem := unreadable(path)):
                errors.append(ConfigError(f"{path}: {problem}", key=key, fix="name a file the publisher's user can read"))
        if self.tls_ca_file and not any(error.key == "tls_ca_file" for error in errors):
            try:
                ssl.create_default_context(cafile=self.tls_ca_file)
            except ssl.SSLError as exc:
                errors.append(ConfigError(f"{self.tls_ca_file} holds no CA certificate in PEM form ({exc.reason or exc})", key="tls_ca_file",
                                          fix="the CA's certificate, -----BEGIN CERTIFICATE----- ..."))
        if self.tls_cert_file and self.tls_key_file and not errors:
            try:
                ssl.create_default_context().load_cert_chain(self.tls_cert_file, self.tls_key_file)
            except ssl.SSLError as exc:
                errors.append(ConfigError(f"{self.tls_cert_file} and {self.tls_key_file} are not a certificate and its key "
                                          f"({exc.reason or exc})", key="tls_cert_file", fix="the client certificate and its own key, PEM"))
        raise_all(errors)

    def password(self) -> str | None:
        """The password: password_file's first line, else the systemd credential, else none (an anonymous broker)."""
        path = self.password_file or credential_path(CREDENTIAL)
        if not path:
            return None
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc})", file=self.file or None,
                              key="mqtt.password_file", fix="name a file the publisher's user can read") from None
        return text.splitlines()[0] if text.strip() else None


def credential_path(name: str) -> str | None:
    """$CREDENTIALS_DIRECTORY/<name> when systemd loaded that credential (LoadCredential=), else None."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if folder and (Path(folder) / name).is_file():
        return str(Path(folder) / name)
    return None


def unreadable(path: str) -> str | None:
    """Why ``path`` cannot be read as a file, or None."""
    try:
        with open(path, "rb") as file:
            file.read(1)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "a folder, not a file"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@dataclass
class MetricsConfig(Section):
    enabled: bool = True
    listen: str = setting("0.0.0.0:9811", fix='address:port to serve /metrics on, e.g. "0.0.0.0:9811" or "127.0.0.1:9811"')

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def check(self) -> None:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"is {self.listen!r}", key="listen", fix='address:port, e.g. "0.0.0.0:9811"')
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ConfigError(f"{host!r} is not an IP address", key="listen",
                              fix='an address of this machine ("0.0.0.0" for all, "127.0.0.1" for this machine only)') from None


@dataclass
class PublishConfig(Section):
    station: str = setting("", fix="the station's id in topics, e.g. line3-cam1 (default: the host name)")
    unit: str = setting("inspectd.service", fix="the station's systemd unit, whose failures end its 'judging' state")
    first_start: str = setting("boot", choices=("boot", "all", "now"))  # where the first run starts; later runs resume
    mqtt: MqttConfig | None = None  # absent: metrics only
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    file: str = internal("")

    @property
    def station_id(self) -> str:
        return self.station or default_station()

    def check(self) -> None:
        if self.station and not NAME.fullmatch(self.station):
            raise ConfigError(f"is {self.station!r}", key="station",
                              fix="one topic level of letters, digits, '_', '.', '-' (no '/', '+', '#', spaces)")


def read(path: str | Path) -> tuple[PublishConfig | None, list[ConfigError]]:
    """The configuration and every problem in it (None when the file cannot be read as TOML)."""
    path = Path(path)
    data, errors = read_toml(path, missing_fix="copy systemd/publish.toml there and edit it, or pass --config FILE",
                             refused_fix="pass the publisher's TOML file with --config FILE")
    if data is None:
        return None, errors
    config, errors = collect(PublishConfig, data, file=path)
    config.file = str(path)
    if config.mqtt is not None:
        config.mqtt.file = str(path)
    return config, errors


def load(path: str | Path) -> PublishConfig:
    config, errors = read(path)
    raise_all(errors)
    assert config is not None
    return config
