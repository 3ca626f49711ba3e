"""Operations: migrations, backup and restore, preflight, retention, stats (no web or queue imports)."""
