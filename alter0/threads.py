"""Thread bindings: which task a chat thread (forum topic, reply chain, Matrix thread) is bound to."""

from __future__ import annotations

from .models import ThreadBinding, now


def bound_task(channel_id: str, thread_key: str | None) -> int | None:
    """The task id bound to this thread of this channel, or None."""
    if not thread_key:
        return None
    row = ThreadBinding.get_or_none(ThreadBinding.channel_id == (channel_id or ""),
                                    ThreadBinding.thread_key == thread_key)
    return row.task_id if row else None


def bind(channel_id: str, thread_key: str | None, task_id: int, replace: bool = False) -> None:
    """Bind a thread to a task; the first binding stays unless ``replace`` (a "move to task" command)."""
    if not thread_key:
        return
    q = ThreadBinding.insert(channel_id=channel_id or "", thread_key=thread_key, task=task_id, created_at=now())
    if replace:
        q = q.on_conflict(conflict_target=[ThreadBinding.channel_id, ThreadBinding.thread_key],
                          preserve=[ThreadBinding.task, ThreadBinding.created_at])
    else:
        q = q.on_conflict_ignore()
    q.execute()
