"""Where webhooks may be sent: public http(s) addresses only, unless a setting allows more.

A callback URL that resolves to a loopback, link-local, private or otherwise reserved address
would let a client make the service call into its own network, so it is refused unless
``WEBHOOK_ALLOW_PRIVATE`` is set (tests set it for a local receiver). The check runs when the URL
is accepted and again before every delivery, since DNS answers can change.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_CHARS = 2048


class CallbackRefused(ValueError):
    """The callback URL is malformed or points somewhere webhooks may not go."""


def check_callback_url(url: str, allow_private: bool) -> None:
    """Raise ``CallbackRefused`` unless webhooks may be delivered to ``url``."""
    if len(url) > MAX_URL_CHARS:
        raise CallbackRefused(f"must be at most {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("must be an absolute http or https URL")
    if parts.username or parts.password:
        raise CallbackRefused("must not carry credentials")
    if allow_private:
        return
    for address in _addresses(parts.hostname, parts.port or _default_port(parts.scheme)):
        if not address.is_global:
            raise CallbackRefused(f"resolves to a non-public address ({address})")


def _addresses(host: str, port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise CallbackRefused(f"host {host!r} does not resolve") from error
    return {ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos}


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
