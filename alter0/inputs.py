"""Values from any channel (CLI, HTTP, console, chat, webhooks) checked once: ids, texts, numbers -> InputError."""

from __future__ import annotations

import re
from typing import Any

from .errors import InputError, NotFound

#: Longest user, channel or request id.
ID_MAX = 200
#: Largest id the database's INTEGER column holds.
MAX_ID = 2**63 - 1


def text(value: Any, name: str, required: bool = True, limit: int = ID_MAX) -> str:
    """A string field: required ones must not be blank; at most ``limit`` characters."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string")
    if required and not value.strip():
        raise InputError(f"{name} must not be empty")
    if len(value) > limit:
        raise InputError(f"{name} is longer than {limit} characters")
    return utf8(value, name)


def utf8(value: str, name: str) -> str:
    """``value`` if it can be stored as UTF-8; InputError naming an unpaired surrogate otherwise."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{name} contains an unpaired surrogate (U+{ord(value[exc.start]):04X}) at character "
                         f"{exc.start}; send valid UTF-8 text") from None
    return value


def is_id(value: Any) -> bool:
    """Whether ``value`` (int or digit string) is a positive id the database can hold."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return False
    raw = str(value).strip()
    return raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MAX_ID


def parse_id(value: Any, name: str = "task_id") -> int | None:
    """An id from user input (int or digit string; None stays None), or InputError."""
    if value is None:
        return None
    if not is_id(value):
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def existing_id(value: Any, kind: str) -> int:
    """The id of a ``kind`` ("job", "task") named in a path or an argument; NotFound when it cannot exist."""
    if not is_id(value):
        raise NotFound(f"{kind} {value!r} does not exist ({kind} ids are positive integers)")
    return int(value)


_NUMBER = {int: re.compile(r"-?[0-9]+"), float: re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")}


def number_text(raw: str, name: str, lo: float, hi: float, kind: type = int) -> Any:
    """A decimal integer (or number, ``kind=float``) written as text, e.g. a query parameter, in [lo, hi];
    only plain decimal digits (no blanks, ``_``, ``inf`` or ``nan``), else InputError."""
    if not _NUMBER[kind].fullmatch(raw) or len(raw) > 40:
        raise InputError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw[:40]!r}")
    value = kind(raw)
    if not lo <= value <= hi:
        raise InputError(f"{name} must be between {lo:g} and {hi:g}")
    return value


def parse_int(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi] from user input, or InputError."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an integer") from None
    if not lo <= n <= hi:
        raise InputError(f"{name} must be between {lo} and {hi}")
    return n
