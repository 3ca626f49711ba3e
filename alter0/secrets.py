"""Masking of secret settings: every view of the config (commands, status, CLI, logs, audit) goes through here."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from .config import Setting

MASK = "***"
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


def mask_value(value: Any) -> Any:
    """A secret value as it may be shown: maps masked by value, URLs keep all but their password, else ***."""
    if isinstance(value, dict):
        return {k: MASK for k in value}
    if isinstance(value, str) and _URL.match(value):
        return mask_url(value)
    return MASK if value else value


def masked(setting: "Setting", value: Any) -> Any:
    """``value`` of ``setting`` as any view of the config shows it."""
    return mask_value(value) if setting.secret else value


def secret_values(cfg_values: dict[str, Any]) -> list[str]:
    """Every non-empty secret string of a config (the values of secret maps included), to scrub text with."""
    from .config import SETTINGS_BY_KEY
    found: list[str] = []
    for key, value in cfg_values.items():
        setting = SETTINGS_BY_KEY.get(key)
        if setting is None or not setting.secret or not value:
            continue
        found += [v for v in value.values() if v] if isinstance(value, dict) else [str(value)]
    return found


def scrub(text: str, cfg_values: dict[str, Any]) -> str:
    """``text`` with every secret value of the config replaced by *** (for lines that quote user input)."""
    for secret in sorted(secret_values(cfg_values), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
