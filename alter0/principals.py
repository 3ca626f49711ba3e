"""Who a caller is, from what it proves: per-user API tokens (hashed, shown once, expiring, revocable).

Modes: with no token at all (no ``security.api_token`` and no live ``alter0 token``), a loopback caller may
name any user but is never admin over HTTP. Once a token exists, every HTTP request must carry one: a user
token acts only as its user, an admin token (or the shared ``security.api_token``) as any user. The local CLI
acts as ``task.cli_user_id`` with admin rights (whoever runs it can edit the config file anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .errors import Forbidden, InputError, NotFound
from .models import ApiToken, now

#: Printed before every token, so a leaked one is easy to grep for.
TOKEN_PREFIX = "a0_"
#: How to get an admin token; every refusal of an admin command says it.
HOW_TO_ADMIN = "create an admin token with `alter0 token create --user YOU --admin` and send it as " \
               "'Authorization: Bearer <token>' (or log in to the console with it)"
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Principal:
    """A proven caller: an admin, or a caller with no proven ``user_id``, may act as any user."""

    user_id: str | None
    admin: bool
    via: str  # "cli", "loopback" (no token configured), "shared-token", "token:<id>"

    def acting_as(self, claimed: Any, default: str | None) -> str | None:
        """The user id a request runs as: the claimed one if this principal may use it, else Forbidden."""
        if claimed in (None, "") or claimed == self.user_id:
            return self.user_id or default
        if self.admin or self.user_id is None:
            return claimed
        raise Forbidden(f"this token acts as {self.user_id!r} only; user_id {str(claimed)[:200]!r} refused "
                        "(an admin token may act as any user)")


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_expiry(raw: str | None, t: float | None = None) -> float | None:
    """``30d``, ``12h``, ``2w``, an ISO date (``2027-01-31``) or ``never``/empty as an epoch time (None = never)."""
    if raw in (None, "", "never"):
        return None
    t = now() if t is None else t
    found = _DURATION.match(raw.strip())
    if found:
        return t + int(found.group(1)) * _UNITS[found.group(2)]
    try:
        return time.mktime(time.strptime(raw.strip(), "%Y-%m-%d"))
    except ValueError:
        raise InputError(f"--expires {raw!r}: give a duration such as 30d, 12h, 2w, a date YYYY-MM-DD, or never") \
            from None


def create_token(user_id: str, admin: bool = False, expires_at: float | None = None,
                 note: str = "") -> tuple[ApiToken, str]:
    """Store a new token for ``user_id``; return the row and the token itself (never stored, shown once)."""
    if not user_id or not user_id.strip() or len(user_id) > 200:
        raise InputError("a token's --user is 1 to 200 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.create(user_id=user_id.strip(), admin=admin, digest=digest(token), prefix=token[:10],
                          note=note[:500], expires_at=expires_at)
    return row, token


def live_tokens():
    """The query of tokens neither revoked nor expired."""
    t = now()
    return ApiToken.select().where(ApiToken.revoked_at.is_null() &
                                   (ApiToken.expires_at.is_null() | (ApiToken.expires_at > t)))


def list_tokens(include_dead: bool = False) -> list[dict]:
    """Every token as shown by ``alter0 token list`` (never the token itself)."""
    query = ApiToken.select() if include_dead else live_tokens()
    return [token_view(row) for row in query.order_by(ApiToken.id)]


def token_view(row: ApiToken) -> dict:
    """A token's public fields."""
    state = "revoked" if row.revoked_at else "expired" if row.expires_at and row.expires_at <= now() else "live"
    return {"id": row.id, "user_id": row.user_id, "admin": row.admin, "prefix": row.prefix, "note": row.note,
            "created_at": row.created_at, "expires_at": row.expires_at, "state": state}


def revoke_token(token_id: int) -> ApiToken:
    """Revoke one token by id (idempotent)."""
    row = ApiToken.get_or_none(ApiToken.id == token_id)
    if row is None:
        raise NotFound(f"token {token_id} does not exist (see `alter0 token list`)")
    if row.revoked_at is None:
        ApiToken.update(revoked_at=now()).where(ApiToken.id == token_id).execute()
        row.revoked_at = now()
    return row


def tokens_configured(shared_token: str) -> bool:
    """Whether HTTP callers must prove who they are (a shared token or a live per-user token exists)."""
    return bool(shared_token) or live_tokens().exists()


def authenticate(given: str, cfg) -> Principal | None:
    """The principal a presented token proves, or None (unknown, revoked or expired).

    A user token of a user listed in security.admin_user_ids is admin: its user is proven, not claimed.
    """
    return by_digest(digest(given), cfg) if given else None


def by_digest(token_digest: str, cfg) -> Principal | None:
    """The principal of a token known by its digest (the console's session keeps only the digest)."""
    shared = cfg["security.api_token"]
    if shared and hmac.compare_digest(token_digest.encode(), digest(shared).encode()):
        return Principal(cfg["task.cli_user_id"], True, "shared-token")
    row = live_tokens().where(ApiToken.digest == token_digest).first()
    if row is None:
        return None
    return Principal(row.user_id, row.admin or row.user_id in cfg["security.admin_user_ids"], f"token:{row.id}")


def cli_principal(cfg, user_id: str) -> Principal:
    """The local CLI: admin as ``task.cli_user_id`` (or as a listed admin id), a plain user otherwise."""
    admin = user_id == cfg["task.cli_user_id"] or user_id in cfg["security.admin_user_ids"]
    return Principal(user_id, admin, "cli")


def require_admin(principal: Principal, what: str) -> None:
    """Forbidden unless ``principal`` is admin, with the way to become one."""
    if principal.admin:
        return
    if principal.via == "loopback":
        raise Forbidden(f"{what} is an admin command; over HTTP and the console it needs an admin token: "
                        f"{HOW_TO_ADMIN}")
    who = principal.user_id or "this caller"
    raise Forbidden(f"{what} is an admin command; {who!r} is not an admin ({HOW_TO_ADMIN})")
