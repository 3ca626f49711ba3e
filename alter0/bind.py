"""Which addresses alter0 may serve on: loopback freely, anything else only with an API token."""

from __future__ import annotations

import ipaddress
import socket

from .errors import ConfigError


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, a name or a unix socket) is reachable only from this machine."""
    host = host.strip("[]")
    if host.startswith("unix:"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_bind(binds: list[str], token: str) -> None:
    """Refuse to listen beyond loopback without an API token."""
    for bind in binds:
        host = bind if bind.startswith("unix:") else bind.rsplit(":", 1)[0] if ":" in bind else bind
        if not token and not is_loopback(host or "0.0.0.0"):
            raise ConfigError(f"refusing to serve on {bind} without an API token: anyone who can reach that address "
                              "could run commands. Set security.api_token (or ALTER0_API_TOKEN), or bind 127.0.0.1.")
