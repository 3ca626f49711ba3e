"""Task memory: a bounded snapshot (summary of older turns + the last N turns) and the prompt built from it."""

from __future__ import annotations

from . import tokens
from .bounded import cut
from . import repetition
from .config import Config
from .models import Message, Task, TaskMemory, now
from .prepared import Prepared, create, update

SUMMARY_LINE_CHARS = 160


_MEMORY_OF = Prepared(lambda task_id: TaskMemory.select().where(TaskMemory.task == task_id))


def get_memory(task_id: int) -> TaskMemory:
    """The task's memory row (created empty when missing)."""
    mem = _MEMORY_OF.first(task_id)
    if mem is None:
        mem, _ = TaskMemory.get_or_create(task=task_id)
    return mem


def append_turn(cfg: Config, task_id: int, message: Message, new_task: bool = False) -> TaskMemory:
    """Add a message to the task's memory, folding the oldest turns into the summary past the limit.
    ``new_task``: the task was created in this transaction, so its memory starts with this message."""
    if new_task and cfg["task.memory_turns"] >= 1:
        return create(TaskMemory, task=task_id, summary="", turns=[_turn(cfg, message)], turn_count=1,
                                 participants=[message.user_id] if message.role == "user" else [], updated_at=now())
    mem = get_memory(task_id)
    turns = list(mem.turns or [])
    if any(t.get("message_id") == message.id for t in turns):
        return mem
    turns.append(_turn(cfg, message))
    summary = mem.summary or ""
    while len(turns) > cfg["task.memory_turns"]:
        summary = _fold(summary, turns.pop(0), cfg["task.memory_summary_chars"])
    participants = list(mem.participants or [])
    if message.role == "user" and message.user_id not in participants:
        participants.append(message.user_id)
    mem.turns, mem.summary, mem.participants = turns, summary, participants
    mem.turn_count = (mem.turn_count or 0) + 1
    mem.updated_at = now()
    update(TaskMemory, {"summary": summary, "turns": turns, "turn_count": mem.turn_count,
                        "participants": participants, "updated_at": mem.updated_at}, {"task": task_id})
    return mem


def _turn(cfg: Config, message: Message) -> dict:
    """A memory turn, cut at task.memory_turn_chars; a looping reply is kept with its repeats dropped, so it is
    never fed back verbatim."""
    content = repetition.collapse(message.content) if message.role != "user" else message.content
    return {"message_id": message.id, "role": message.role, "content": cut(content, cfg["task.memory_turn_chars"]),
            "user_id": message.user_id, "at": message.created_at}


def _fold(summary: str, turn: dict, limit: int) -> str:
    """Add one turn to the summary as a short line; keep the first line (the task's origin) and the newest."""
    text = " ".join(turn["content"].split())
    if len(text) > SUMMARY_LINE_CHARS:
        text = text[:SUMMARY_LINE_CHARS - 1] + "…"
    lines = [ln for ln in summary.splitlines() if ln] + [f"- {turn['role']}: {text}"]
    while len(lines) > 2 and sum(len(ln) + 1 for ln in lines) > limit:
        del lines[1]
    return "\n".join(lines)[:limit] if limit else ""


def drop_turns(task_id: int, messages: list[Message]) -> int:
    """Take these messages out of the task's memory (a turn that was moved to another task): their turns, and the
    summary line each left when it was folded in; how many were found."""
    mem = _MEMORY_OF.first(task_id)
    if mem is None or not messages:
        return 0
    ids = {m.id for m in messages}
    turns = [t for t in (mem.turns or []) if t.get("message_id") not in ids]
    found = len(mem.turns or []) - len(turns)
    kept_ids = {t.get("message_id") for t in mem.turns or []}
    lines = (mem.summary or "").splitlines()
    for m in messages:
        if m.id in kept_ids:
            continue
        line = _fold("", {"role": m.role, "content": m.content}, 10**9)
        if line in lines:
            lines.remove(line)
            found += 1
    mem.turns, mem.summary = turns, "\n".join(lines)
    mem.turn_count = max(0, (mem.turn_count or 0) - found)
    mem.updated_at = now()
    mem.save()
    return found


def clear_memory(task_id: int) -> None:
    """Forget a task's memory (its messages stay)."""
    TaskMemory.delete().where(TaskMemory.task == task_id).execute()


def build_prompt(cfg: Config, task: Task, message: Message, resume: bool) -> tuple[str, dict]:
    """The executor prompt and what it used: the message alone when resuming the tool's own session or on a
    first turn; otherwise the message, then the newest turns and the summary of the task's memory while they
    fit ``task.prompt_token_budget`` (tokens counted; older turns left out are counted in the result)."""
    budget = cfg["task.prompt_token_budget"]
    used = tokens.count(message.content)
    info = {"tokens": used, "budget": budget, "counter": tokens.COUNTER, "turns": 0, "turns_left_out": 0,
            "summary": False, "resume": resume}
    mem = None if resume else _MEMORY_OF.first(task.id)
    earlier = [t for t in (mem.turns if mem else []) if t.get("message_id") != message.id]
    summary = mem.summary if mem else ""
    if not earlier and not summary:
        return message.content, info
    head = f"You are {cfg['agent.name']}, continuing task #{task.id}: {task.title}"
    used += tokens.count(head)
    kept: list[str] = []
    for t in reversed(earlier):  # the newest turns first
        line = f"[{t['role']}] {t['content']}"
        n = tokens.count(line)
        if used + n > budget:
            break
        kept.insert(0, line)
        used += n
    info.update(turns=len(kept), turns_left_out=len(earlier) - len(kept))
    parts = [head]
    if summary and used + tokens.count(summary) <= budget:
        used += tokens.count(summary)
        info["summary"] = True
        parts.append("Summary of earlier turns:\n" + summary)
    if kept:
        parts.append("Recent turns:\n" + "\n".join(kept))
    parts.append("New message:\n" + message.content)
    info["tokens"] = used
    return "\n\n".join(parts), info
