"""The layout of the output directory."""

from __future__ import annotations

import time
from pathlib import Path


def output_paths(output_dir: Path) -> dict[str, Path]:
    """Named paths under the output directory."""
    return {
        "db": output_dir / "db" / "alter0.db",
        "queue": output_dir / "queue" / "huey.db",
        "logs": output_dir / "logs",
        "orchestrator": output_dir / "orchestrator",
        "audit": output_dir / "audit",
        "work": output_dir / "work",
        "backups": output_dir / "backups",
        "agent_home": output_dir / "agent-home",
    }


def ensure_dirs(output_dir: Path) -> dict[str, Path]:
    """Create the output layout (idempotent) and return its paths."""
    paths = output_paths(output_dir)
    for name in ("logs", "orchestrator", "audit", "work", "backups"):
        paths[name].mkdir(parents=True, exist_ok=True)
    paths["db"].parent.mkdir(parents=True, exist_ok=True)
    paths["queue"].parent.mkdir(parents=True, exist_ok=True)
    return paths


#: (root, UTC day number) -> root/<YYYY-MM-DD>, made already by this process.
_made: dict[tuple[Path, int], Path] = {}


def dated_dir(root: Path, when: float | None = None, again: bool = False) -> Path:
    """root/<YYYY-MM-DD> (UTC), created once per process (stage logs ask three times a message, so a day's
    directory is remembered by its day number: no date formatting per call); ``again``: it was removed
    meanwhile (a write into it found no directory), create it again."""
    when = when or time.time()
    key = (root, int(when // 86400))
    path = _made.get(key)
    if again or path is None:
        path = root / time.strftime("%Y-%m-%d", time.gmtime(when))
        path.mkdir(parents=True, exist_ok=True)
        _made[key] = path
    return path
