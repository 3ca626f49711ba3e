"""The Huey instance: SqliteHuey on <output>/queue/huey.db, built from alter0's config."""

from huey import SqliteHuey

from alter0.config import load_config
from alter0.paths import ensure_dirs


def make_huey(cfg) -> SqliteHuey:
    """A SqliteHuey on the output directory's queue store (WAL, no result store: the Job table is the truth)."""
    path = ensure_dirs(cfg.output_dir)["queue"]
    return SqliteHuey("alter0", filename=str(path), results=False, utc=True, journal_mode="wal",
                      timeout=cfg["runtime.queue.enqueue_timeout_sec"], fsync=cfg["runtime.db.synchronous"] == "full")


huey = make_huey(load_config())
