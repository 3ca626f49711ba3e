"""Render the settings table as Markdown (docs/configuration.md is generated from it and tested to match)."""

from __future__ import annotations

import json

from .config import SETTINGS


def settings_markdown() -> str:
    """docs/configuration.md: every setting with its default, environment variable and help."""
    rows = ["# Configuration", "",
            "Settings come from `config/config.json` (or `--config FILE` / `ALTER0_CONFIG`), nested by the dots in "
            "each key; an environment variable overrides the file; a bad value stops the program with a message "
            "naming the key, the value and what is allowed. Generated from `alter0/config.py` "
            "(`python -m alter0.config_docs > docs/configuration.md`). Secret settings are masked in `/config`, "
            "`alter0 config`, `/api/status`, logs, the audit and error messages (maps such as `executor.env` by "
            "value, URLs keep all but their password).", "",
            "| key | default | environment | allowed | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        allowed = ", ".join(map(str, s.choices)) if s.choices else _range(s)
        rows.append(f"| `{s.key}` | `{json.dumps(s.default)}` | `{s.env_name}` | {allowed} | {s.help}{_marks(s)} |")
    return "\n".join(rows) + "\n"


def _marks(s) -> str:
    if s.secret:
        return " **Secret:** masked in every view of the config."
    return " **Admin only:** hidden from non-admins." if s.admin_only else ""


def _range(s) -> str:
    if s.min is not None and s.max is not None:
        return f"{s.min} … {s.max}"
    if s.min is not None:
        return f"≥ {s.min}"
    return ""


if __name__ == "__main__":
    print(settings_markdown(), end="")
