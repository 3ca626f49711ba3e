"""Restoring a config from an archive: show how the executor settings would change and ask before writing.

A crafted archive must not silently change which binary runs: ``alter0 restore --with-config`` prints every
``executor.*`` difference and applies it only with ``--yes`` or a "y" typed at a terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..config import SETTINGS_BY_KEY, _flatten
from ..errors import InputError
from ..secrets import masked

#: Settings whose change decides what runs on this machine.
GUARDED_PREFIXES = ("executor.", "router.", "closer.")


def _settings(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"the config in the archive is not valid JSON: {exc}") from None
    return _flatten(data) if isinstance(data, dict) else {}


def _shown(key: str, value: Any) -> str:
    setting = SETTINGS_BY_KEY.get(key)
    return json.dumps(masked(setting, value) if setting else value, ensure_ascii=False)


def executor_diff(current: Path | None, incoming: Path) -> list[str]:
    """One line per guarded setting the incoming config changes: ``key: old -> new`` (secrets masked)."""
    old, new = _settings(current), _settings(incoming)
    lines = []
    for key in sorted(set(old) | set(new)):
        if key.startswith(GUARDED_PREFIXES) and old.get(key) != new.get(key):
            lines.append(f"{key}: {_shown(key, old.get(key))} -> {_shown(key, new.get(key))}")
    return lines


def approve(diff: list[str], yes: bool, ask: Callable[[str], str] | None) -> None:
    """Return if the change may be written; else InputError listing it (``ask`` is None when not interactive)."""
    if not diff or yes:
        return
    listing = "\n  ".join(diff)
    if ask is not None and ask(f"the archive's config changes what runs:\n  {listing}\napply it? [y/N] ")\
            .strip().lower() in ("y", "yes"):
        return
    raise InputError(f"restore --with-config refused: the archive's config changes what runs ({'; '.join(diff)}); "
                     "check it, then rerun with --yes to apply it (nothing was restored)")
