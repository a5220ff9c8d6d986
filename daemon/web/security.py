"""What every response carries and what every request must show.

- Headers: a strict Content-Security-Policy (the page's own script, style and pictures; nothing inline,
  nothing from elsewhere: plants are offline, and a page that can load nothing foreign leaks nothing),
  no sniffing, no framing, no referrer; HSTS over HTTPS.
- The Host header, on a loopback listener without a password: only loopback names, the listen address
  and ``allowed_hosts``. A web page on the internet that rebinds its own name to 127.0.0.1 (DNS rebinding)
  would otherwise read the station page through the operator's browser.
- The password (HTTP Basic over HTTPS, compared in constant time) when one is set.

    >>> host_allowed("localhost:8080", "127.0.0.1", []), host_allowed("evil.example:8080", "127.0.0.1", [])
    (True, False)
"""

from __future__ import annotations

import base64
import binascii
import hmac

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=(), serial=()",
}
HSTS = "max-age=31536000"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
REALM = 'Basic realm="inspectd station", charset="UTF-8"'


def host_name(header: str) -> str:
    """The name in a Host header, without the port: ``[::1]:8080`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(header: str | None, listen: str, allowed: list[str]) -> bool:
    if not header:
        return False
    name = host_name(header)
    return name in LOOPBACK_NAMES or name == listen.lower() or name in (host.lower() for host in allowed)


def credentials_match(header: str | None, user: str, password: str) -> bool:
    """An ``Authorization: Basic ...`` header naming ``user`` and ``password``; both compared in constant time."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        given_user, _, given_password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    same_user = hmac.compare_digest(given_user.encode(), user.encode())
    same_password = hmac.compare_digest(given_password.encode(), password.encode())
    return same_user and same_password
