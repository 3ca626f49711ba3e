"""Cross-site and DNS-rebinding guard, before any view: Host allow-list, foreign Origin refused, JSON-only API.

* ``Host`` must be an IP address, ``localhost`` (or ``*.localhost``), the bind address ``web.host``, or a name
  in ``security.allowed_hosts`` (``*`` allows any): a rebinding page's hostname is none of these (the rule
  Vite and Jupyter use).
* A request carrying an ``Origin`` other than the server's own (scheme://Host) is refused unless listed in
  ``security.allowed_origins``: no other web page can drive the agents, with or without a token.
* A body sent to ``/api/*`` must be ``application/json`` (415 otherwise): browsers send text/plain and form
  bodies cross-site without asking, never JSON.

Every refusal is one audit line. Console forms keep their CSRF tokens (``security.py``). Tracker webhooks
(``/hooks/*``) skip these rules: a server sends them under whatever public name alter0 has, and their
per-repository HMAC signature (``hooks.py``) is what no page or rebinding trick can produce.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, request

from alter0.audit import record
from alter0.errors import Alter0Error

from .db import get_rt

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: Tracker webhooks: authenticated by their HMAC signature, called by servers under any public name.
HOOKS = "/hooks/"


class ForbiddenHost(Alter0Error):
    """The Host header names a server this alter0 does not answer for (DNS rebinding)."""

    code, status = "forbidden_host", 403


class ForbiddenOrigin(Alter0Error):
    """The request comes from another web site's page."""

    code, status = "forbidden_origin", 403


class UnsupportedMediaType(Alter0Error):
    """An API body that is not JSON."""

    code, status = "unsupported_media_type", 415


def host_name(host: str) -> str:
    """``host[:port]`` or ``[v6]:port`` without the port, lower-cased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host: str, bind_host: str, allowed: list[str]) -> bool:
    """Whether a ``Host`` header may be served (see the module docstring)."""
    name = host_name(host)
    if not name:
        return False
    if "*" in allowed or _is_ip(name) or name == "localhost" or name.endswith(".localhost"):
        return True
    return name == host_name(bind_host) or name in {host_name(a) for a in allowed}


def origin_allowed(origin: str, host: str, allowed: list[str]) -> bool:
    """Whether ``origin`` is the server's own origin (any scheme, this Host) or listed."""
    origin = origin.strip().rstrip("/").lower()
    own = {f"http://{host.lower()}", f"https://{host.lower()}"}
    return origin in own or origin in {a.strip().rstrip("/").lower() for a in allowed}


def audit_refusal(reason: str, what: str, who: str | None = None) -> None:
    """One audit line for a refused request: from where, what, why."""
    rt = get_rt()
    record(rt.output_dir, rt.cfg.secrets(), "refused", who=who, source=request.remote_addr or "",
           what=f"{request.method} {request.path}: {what}", allowed=False, reason=reason)


def refuse(error: Alter0Error, what: str, who: str | None = None) -> None:
    """Audit a refused request, then raise ``error``."""
    audit_refusal(error.code, what, who)
    raise error


def check_request() -> None:
    """before_request of the whole app: Host, then Origin, then the API's content type."""
    cfg = get_rt().cfg
    host = request.headers.get("Host", "")
    if request.path.startswith(HOOKS):
        return  # signed by the tracker (web/hooks.py): no browser page can forge one, whatever Host it names
    if not host_allowed(host, cfg["web.host"], cfg["security.allowed_hosts"]):
        refuse(ForbiddenHost(f"Host {host[:200]!r} is not served here: use the address alter0 listens on or "
                             "localhost, or add the name to security.allowed_hosts (a guard against DNS "
                             "rebinding)"), f"Host {host[:200]!r}")
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, host, cfg["security.allowed_origins"]):
        refuse(ForbiddenOrigin(f"requests from the page at {origin[:200]!r} are refused: only this server's own "
                               "pages may call it (list trusted origins in security.allowed_origins)"),
               f"Origin {origin[:200]!r}")
    if request.path.startswith("/api/") and request.method not in SAFE_METHODS and has_body() \
            and not request.is_json:
        refuse(UnsupportedMediaType(f"the API accepts only application/json bodies, not "
                                    f"{(request.mimetype or 'a body without Content-Type')[:100]!r}"),
               f"Content-Type {request.content_type!r}")


def has_body() -> bool:
    """Whether the request says it carries a body (a length, a chunked body or a content type)."""
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower() \
        or bool(request.headers.get("Content-Type"))


def init_app(app: Flask) -> None:
    app.before_request(check_request)
