"""``/etc/inspectd/web.toml``: where the page listens and how it is protected, and where it reads the station from.

A file of its own, not a table of the station's: a mistake here must never stop the inspection.
Every key is checked where it is read (the station's ``settings`` machinery: limits beside the field,
one line per problem naming the file, the key and the fix, exit 78).

The rule of the listener: on a loopback address (127.0.0.0/8, ::1, ``localhost``) the page needs
nothing more; on any other address it needs BOTH a password (a systemd credential) and HTTPS (a
configured certificate and key). A plant network sees nothing in clear and nothing without the password.

    >>> config = WebConfig(listen="0.0.0.0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    inspectd.daemon.errors.ConfigError: key listen: '0.0.0.0' is not a loopback address, so the page needs a password and HTTPS: ...
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.station.settings import Section, collect, internal, raise_all, setting

DEFAULT_PATH = Path("/etc/inspectd/web.toml")
CREDENTIAL_FIX = ('put the password in /etc/inspectd/web-password (mode 0600, root) and give it to the service: '
                  'systemctl edit inspectd-web, [Service] LoadCredential=web-password:/etc/inspectd/web-password')
SHIFT_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@dataclass
class WebConfig(Section):
    listen: str = "127.0.0.1"  # an IP address (or localhost); off loopback: password and HTTPS are required
    port: int = setting(8080, minimum=1, maximum=65535, fix="a TCP port, e.g. 8080")
    certificate: str = ""  # PEM certificate (chain) for HTTPS
    key: str = ""  # its private key (PEM)
    password: str = ""  # the name of the systemd credential holding the password ("" = none)
    user: str = "inspectd"  # the user name asked with the password
    allowed_hosts: list[str] = field(default_factory=list)  # host names the page answers to besides loopback and listen
    station_config: str = "/etc/inspectd/inspectd.toml"  # the station's configuration: where its archive, live tap and model are
    journal_directory: str = ""  # journal files to read (journalctl -D); "" = this machine's journal
    shifts: list[str] = field(default_factory=lambda: ["06:00", "14:00", "22:00"])  # when shifts start: the page counts from the last
    file: str = internal("")

    def check(self) -> None:
        errors = []
        if self.listen != "localhost":
            try:
                ipaddress.ip_address(self.listen)
            except ValueError:
                errors.append(ConfigError(f"{self.listen!r} is not an IP address", key="listen",
                                          fix="an address of this machine, e.g. 127.0.0.1 (loopback), 192.168.10.5 or 0.0.0.0 (every one)"))
        if not errors and not is_loopback(self.listen):
            missing = [name for name in ("password", "certificate", "key") if not getattr(self, name)]
            if missing:
                listed = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
                errors.append(ConfigError(
                    f"{self.listen!r} is not a loopback address, so the page needs a password and HTTPS: {listed} "
                    f"{'is' if len(missing) == 1 else 'are'} not set", key="listen",
                    fix='set password = "web-password" (a systemd credential: LoadCredential=web-password:/etc/inspectd/web-password) '
                        "and certificate, key (PEM files), or listen on 127.0.0.1 and use an SSH tunnel"))
        if bool(self.certificate) != bool(self.key):
            errors.append(ConfigError("certificate and key go together", key="key" if self.certificate else "certificate",
                                      fix="set both (PEM files), or neither for plain HTTP on loopback"))
        if self.password and ("/" in self.password or self.password in (".", "..")):
            errors.append(ConfigError(f"{self.password!r} is not a credential name", key="password",
                                      fix='the name given to LoadCredential=, e.g. "web-password"'))
        bad = [text for text in self.shifts if not isinstance(text, str) or not SHIFT_TIME.fullmatch(text)]
        if bad or not self.shifts:
            errors.append(ConfigError(f"must be a list of HH:MM times, got {self.shifts}", key="shifts",
                                      fix='e.g. shifts = ["06:00", "14:00", "22:00"]; ["00:00"] counts from midnight'))
        raise_all(errors)

    @property
    def https(self) -> bool:
        return bool(self.certificate)

    def read_password(self) -> str | None:
        """The password from the systemd credential named ``password`` ($CREDENTIALS_DIRECTORY), or None when none is set."""
        if not self.password:
            return None
        folder = os.environ.get("CREDENTIALS_DIRECTORY")
        if not folder:
            raise ConfigError(f"the credential {self.password!r} was not given to the service ($CREDENTIALS_DIRECTORY is not set)",
                              file=self.file or None, key="password", fix=CREDENTIAL_FIX)
        path = Path(folder) / self.password
        try:
            text = path.read_text(encoding="utf-8").strip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"the credential {path} cannot be read ({getattr(exc, 'strerror', None) or exc})", file=self.file or None,
                              key="password", fix=CREDENTIAL_FIX) from None
        if len(text) < 12:
            raise ConfigError(f"the password in {path} has {len(text)} characters", file=self.file or None, key="password",
                              fix="use at least 12 (e.g. openssl rand -base64 18 > /etc/inspectd/web-password)")
        return text


def load(path: str | Path) -> WebConfig:
    """The page's configuration; a file that does not exist is the defaults (loopback, no password)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        config = WebConfig()
        config.file = str(path)
        return config
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read ({getattr(exc, 'strerror', None) or exc})", file=path, fix="check its permissions") from None
    try:
        data = tomllib.loads(text)
    except ValueError as exc:
        raise ConfigError(f"not valid TOML ({str(exc).splitlines()[0]})", file=path, fix="fix the syntax") from None
    config, errors = collect(WebConfig, data, file=path)
    raise_all(errors)
    config.file = str(path)
    return config
