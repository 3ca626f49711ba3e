"""Workspaces: a git worktree and branch per task, what each turn changed (receipts), review, merge, discard, prune.

``workdir_for`` and ``after_turn`` are what the generate stage calls; the rest serves the channels.
"""

from __future__ import annotations

from .receipts import record as record_receipt, summary as receipt_summary
from .turn import after_turn, allows_close, on_task_closed, workdir_for

__all__ = ["after_turn", "allows_close", "on_task_closed", "receipt_summary", "record_receipt", "workdir_for"]
