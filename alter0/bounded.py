"""Size caps on what alter0 stores and re-sends: texts cut with a clear marker, a long reply kept whole once
(gzipped under output/replies/), so neither the database nor the next prompt grows with what an agent says."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

#: How the cut marker starts (tests and users look for it).
CUT_MARK = "[… cut by alter0:"


def cut(text: str, limit: int, where: str = "") -> str:
    """``text`` if it has at most ``limit`` characters; else its first part and a marker saying how much was
    left out (and ``where`` the whole text is)."""
    if len(text) <= limit:
        return text
    tail = f"{CUT_MARK} {len(text) - limit:,} of {len(text):,} characters left out{where}]"
    return text[:max(0, limit - len(tail) - 2)] + "\n\n" + tail


def replies_dir(output_dir: Path) -> Path:
    return output_dir / "replies"


def keep_whole(output_dir: Path, job_id: int, text: str) -> Path | None:
    """Write the whole reply of a job once, gzipped (a re-run overwrites the same file); None if it cannot be
    written (the stored, cut reply says so)."""
    path = replies_dir(output_dir) / f"job-{job_id}.txt.gz"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as fh:
            fh.write(text)
        tmp.replace(path)
    except OSError:
        return None
    return path


def stored_reply(output_dir: Path, job_id: int, text: str, limit: int) -> str:
    """The reply as the database keeps it: whole up to ``limit`` characters; longer ones cut, the whole text
    kept in output/replies/job-<id>.txt.gz."""
    if len(text) <= limit:
        return text
    path = keep_whole(output_dir, job_id, text)
    return cut(text, limit, f"; the whole reply is in {path}" if path else "; the whole reply could not be kept")
