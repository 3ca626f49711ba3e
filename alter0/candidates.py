"""What the decisions read: a scope's open tasks as router candidates (memories decoded once per change), a
user's forced task, a task's last messages and pending jobs."""

from __future__ import annotations

import threading
from collections import OrderedDict

from .models import ACTIVE, Job, Message, Task, TaskMemory, UserState
from .prepared import Prepared
from .routing.base import Candidate, Turn


def _open_tasks(scope, limit):
    return (Task.select(Task.id, Task.title, Task.user_id, Task.last_active_at, Task.created_at)
            .where((Task.scope == scope) & (Task.status == "open"))
            .order_by(Task.last_active_at.desc(), Task.id.desc()).limit(limit))


OPEN_TASKS = Prepared(_open_tasks)
OPEN_TASK_MEMORY_STAMPS = Prepared(lambda scope, limit: TaskMemory.select(
    TaskMemory.task, TaskMemory.updated_at, TaskMemory.turn_count).where(
    TaskMemory.task.in_(_open_tasks(scope, limit).select(Task.id))))
#: (task id, memory updated_at, turn count) -> (turns, participants, summary): a memory is decoded once per
#: change, not once per routed message (a room with 24 open tasks changes one or two between two messages).
_memories: OrderedDict[tuple[int, float, int], tuple[list[Turn], list[str], str]] = OrderedDict()
_memories_lock = threading.Lock()
MEMORY_CACHE_SIZE = 4096
USER_STATE = Prepared(lambda user_id: UserState.select().where(UserState.user_id == user_id))
TASK_BY_ID = Prepared(lambda task_id: Task.select().where(Task.id == task_id))


def task_by_id(task_id: int) -> Task | None:
    """The task with this id, or None."""
    return TASK_BY_ID.first(task_id)


PENDING_AFTER = Prepared(lambda task_id, job_id: Job.select(Job.id).where(
    (Job.task == task_id) & (Job.id > job_id) & Job.status.in_(ACTIVE))
    .limit(1))
LAST_MESSAGES = Prepared(lambda task_id: Message.select().where(Message.task == task_id)
                          .order_by(Message.id.desc()).limit(10))
MESSAGE_TEXT = Prepared(lambda message_id: Message.select(Message.content).where(Message.id == message_id))


def candidates(cfg, scope: str) -> list[Candidate]:
    """Open tasks of the scope, most recently active first, up to the candidate limit."""
    limit = cfg["task.open_task_candidate_limit"]
    tasks = list(OPEN_TASKS.tuples(scope, limit))
    if not tasks:
        return []
    mems = _decoded_memories({tid: (at, n) for tid, at, n in OPEN_TASK_MEMORY_STAMPS.tuples(scope, limit)})
    out = []
    for task_id, title, user_id, last_active_at, created_at in tasks:
        turns, participants, summary = mems.get(task_id, ([], [user_id], ""))
        out.append(Candidate(task_id=task_id, title=title, turns=list(turns), participants=list(participants),
                             last_active_at=last_active_at, created_at=created_at, summary=summary))
    return out


def _decoded_memories(stamps: dict[int, tuple[float, int]]) -> dict[int, tuple[list[Turn], list[str], str]]:
    """Task id -> (turns, participants, summary) for these memories, read and decoded only when changed."""
    with _memories_lock:
        out = {tid: _memories.get((tid, *stamp)) for tid, stamp in stamps.items()}
    missing = [tid for tid, hit in out.items() if hit is None]
    if missing:
        for mem in TaskMemory.select().where(TaskMemory.task.in_(missing)):
            turns = [Turn(x["role"], x["content"], x["user_id"], x["at"]) for x in (mem.turns or [])]
            out[mem.task_id] = entry = (turns, list(mem.participants or []), mem.summary or "")
            with _memories_lock:
                _memories[(mem.task_id, mem.updated_at, mem.turn_count)] = entry
                while len(_memories) > MEMORY_CACHE_SIZE:
                    _memories.popitem(last=False)
    return {tid: hit for tid, hit in out.items() if hit is not None}
