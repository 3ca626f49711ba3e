"""The security audit: one JSONL line per admin command, token change and refused request (who, from where,
what, allowed), in audit/<date>/command_permission.jsonl; secrets in the quoted text are masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from .jsonlog import audit
from .secrets import scrub


def record(output_dir: Path, secrets: Iterable[str], event: str, *, who: str | None, source: str,
           what: str, allowed: bool, **extra: Any) -> None:
    """Append one audit line; ``what`` is scrubbed of ``secrets`` (``Config.secrets()``) and cut to 500 characters."""
    audit(output_dir, event=event, user_id=who, source=source, command=scrub(str(what), secrets)[:500],
          allowed=allowed, **extra)
