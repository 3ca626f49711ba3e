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


_made: set[Path] = set()


def dated_dir(root: Path, when: float | None = None, again: bool = False) -> Path:
    """root/<YYYY-MM-DD> (UTC), created once per process (stage logs ask three times a message); ``again``: it
    was removed meanwhile (a write into it found no directory), create it again."""
    day = time.strftime("%Y-%m-%d", time.gmtime(when or time.time()))
    path = root / day
    if again or path not in _made:
        path.mkdir(parents=True, exist_ok=True)
        _made.add(path)
    return path
