"""Masking of secret settings: every view of the config (commands, status, CLI, logs, audit) goes through here."""

from __future__ import annotations

import re
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
#: In a list of objects (``notify.webhooks``), the keys whose values are secret; the rest stay visible.
SECRET_KEYS = ("secret", "token", "password")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def mask_url(url: str) -> str:
    """``url`` with the password of its user info and its query (``?password=``) replaced by ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK
    if password is not None:
        parts = parts._replace(netloc=f"{parts.username or ''}:{MASK}@{parts.netloc.rpartition('@')[2]}")
    return urlunsplit(parts._replace(query=MASK if parts.query else "", fragment=""))


def _mask_item(item: Any) -> Any:
    """One element of a secret list: an object keeps its keys but not the values of SECRET_KEYS (URLs keep all but
    their password and query); anything else is masked whole."""
    if isinstance(item, dict):
        return {k: MASK if k in SECRET_KEYS and v else mask_url(v) if isinstance(v, str) and _URL.match(v) else v
                for k, v in item.items()}
    return mask_value(item)


def mask_value(value: Any) -> Any:
    """A secret value as it may be shown: maps masked by value, lists item by item, URLs keep all but their
    password, else ***."""
    if isinstance(value, dict):
        return {k: MASK for k in value}
    if isinstance(value, list):
        return [_mask_item(v) for v in value]
    if isinstance(value, str) and _URL.match(value):
        return mask_url(value)
    return MASK if value else value


def masked(setting: Any, value: Any) -> Any:
    """``value`` of ``setting`` (a config.Setting) as any view of the config shows it."""
    return mask_value(value) if setting.secret else value


def plain_secrets(value: Any) -> list[str]:
    """The secret strings inside one secret setting's value (each value of a map)."""
    if not value:
        return []
    if isinstance(value, list):
        return [str(item[k]) for item in value if isinstance(item, dict) for k in SECRET_KEYS if item.get(k)] + \
            [s for item in value if not isinstance(item, dict) for s in plain_secrets(item)]
    return [v for v in value.values() if v] if isinstance(value, dict) else [str(value)]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (4 characters or more) replaced by *** (for lines quoting user input)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
