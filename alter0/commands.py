"""The slash-command interpreter every channel shares (CLI chat, HTTP /api/command, web console)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable

from . import inputs, liveness, service, taskstate, views
from .audit import record
from .config import BUSY_POLICIES, SETTINGS_BY_KEY, parse_value, validate
from .taskstate import scope_of
from .errors import Alter0Error, ConfigError, Conflict, Forbidden, InputError
from .memory import clear_memory
from .models import Job, TaskMemory, UserState, now
from .ops.stats import format_stats, stats
from .principals import Principal, require_admin
from .runtime import Runtime
from .secrets import masked
from .workspaces.git import toplevel

HELP = """Commands:
  /help                         this text
  /status                       queue backlog, workers, executor
  /config                       all settings;  /config get KEY  one setting
  /task list [open|closed|all]  your tasks
  /task current                 the task your messages are forced to, if any
  /task use ID                  send your next messages to task ID (/task use none to stop)
  /task new [TITLE]             start a new task and use it
  /task close [ID]              close a task (default: the current one)
  /task reopen ID               reopen a closed task
  /task memory [ID]             show a task's memory;  /task memory clear [ID]
  /task stats                   counts and stage durations
  /task busy POLICY [ID]        what a message for the busy task does: enqueue, reject, interrupt, collect
  /task repo PATH [ID]          (admin) the task's agent works in its own worktree of the git repo at PATH
  /move N                       move your last message (and its reply) to task N, where it runs again
  /move JOB N                   move job JOB's message to task N
Admin only (the local CLI, or an admin token over HTTP and the console):
  /config set KEY VALUE         change a setting in the config file
  /executor [NAME]              show or set the executor"""


@dataclass
class Result:
    """A command's answer: text for people, data for programs."""

    text: str
    data: Any = None
    ok: bool = True
    extra: dict = field(default_factory=dict)


def is_command(text: str) -> bool:
    """A known slash command (a pasted path such as "/usr/bin/python crashed" stays a message)."""
    if not isinstance(text, str) or not text.lstrip().startswith("/"):
        return False
    head = text.split(maxsplit=1)[0].lower()
    return head in COMMANDS or head in ADMIN


def run_command(rt: Runtime, text: str, user_id: str, channel_id: str = "", principal: Principal | None = None,
                source: str = "") -> Result:
    """Interpret one slash command for ``user_id``; admin commands need ``principal.admin`` (audited)."""
    principal = principal or Principal(user_id, False, "unknown")
    for name, value in (("command", text), ("user_id", user_id), ("channel_id", channel_id)):
        inputs.utf8(value, name)
    try:
        words = shlex.split(text.strip())
    except ValueError as exc:
        raise InputError(f"cannot parse command: {exc}") from None
    if not words or not words[0].startswith("/"):
        raise InputError("a command starts with /; try /help")
    head, args = words[0].lower(), words[1:]
    if head == "/task" and args[:1] == ["repo"]:  # it points an agent at a repository
        _check_admin(rt, principal, "/task repo", _quoted(text, head, args), user_id, channel_id, source)
    if head in ADMIN or (head == "/config" and args[:1] == ["set"]):
        _check_admin(rt, principal, head, _quoted(text, head, args), user_id, channel_id, source)
        return (ADMIN.get(head) or _config_set)(rt, args, user_id, channel_id)
    if head == "/config":
        return _config(rt, args, principal.admin)
    if head == "/move":
        return _move(rt, args, user_id, channel_id, principal, source)
    handler = COMMANDS.get(head)
    if handler is None:
        raise InputError(f"unknown command {head}; try /help")
    return handler(rt, args, user_id, channel_id)


def _help(rt, args, user, channel) -> Result:
    return Result(HELP)


def _status(rt, args, user, channel) -> Result:
    backlog = views.backlog()
    workers = liveness.live_workers(rt.cfg)
    try:
        executor = rt.executor_name()
    except Alter0Error as exc:
        executor = f"unavailable ({exc.message})"
    data = {"backlog": backlog, "workers": len(workers), "executor": executor}
    text = (f"workers alive: {len(workers)}\nexecutor: {executor}\nbacklog: " +
            ", ".join(f"{k} {v}" for k, v in backlog.items()))
    return Result(text, data)


def _quoted(text: str, head: str, args: list[str]) -> str:
    """The command as the audit quotes it: the value of a secret setting being set is masked."""
    setting = SETTINGS_BY_KEY.get(args[1]) if head == "/config" and len(args) >= 3 else None
    return f"/config set {args[1]} ***" if setting is not None and setting.secret else text.strip()


def _check_admin(rt, principal: Principal, head: str, text: str, user: str, channel: str, source: str) -> None:
    """Audit an admin command attempt and refuse it unless the principal is admin."""
    allowed = principal.admin
    record(rt.output_dir, rt.cfg.secrets(), "admin_command", who=user, source=source or principal.via,
           what=text.strip(), allowed=allowed, channel_id=channel, via=principal.via)
    if not allowed:
        require_admin(principal, head if head != "/config" else "/config set")


def _config(rt, args, admin: bool) -> Result:
    values = rt.cfg.public(admin=admin)
    if args and args[0] == "get":
        if len(args) == 2 and args[1] in SETTINGS_BY_KEY and args[1] not in values:
            raise Forbidden(f"{args[1]} is shown to admins only")
        if len(args) != 2 or args[1] not in values:
            raise InputError("usage: /config get KEY (a known key; /config lists them)")
        return Result(f"{args[1]} = {json.dumps(values[args[1]])}", {args[1]: values[args[1]]})
    if args:
        raise InputError("usage: /config | /config get KEY | /config set KEY VALUE")
    return Result("\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items()), values)


def _config_set(rt, args, user, channel) -> Result:
    if len(args) != 3 or args[0] != "set":
        raise InputError("usage: /config set KEY VALUE")
    return _write_setting(rt, args[1], args[2])


def _write_setting(rt, key: str, raw: str) -> Result:
    setting = SETTINGS_BY_KEY.get(key)
    if setting is None:
        raise InputError(f"unknown setting {key!r}; /config lists them")
    try:
        value = validate(setting, parse_value(setting, raw))
    except ConfigError as exc:  # the caller's value, not the server's config: a 400
        raise InputError(exc.message) from None
    path = rt.cfg.path or __import__("pathlib").Path("config/config.json")
    data = json.loads(path.read_text()) if path.exists() else {}
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    shown = masked(setting, value)
    return Result(f"{key} = {json.dumps(shown)} written to {path} (restart web and worker to apply)",
                  {key: shown})


def _executor(rt, args, user, channel) -> Result:
    if not args:
        return Result(f"executor.name = {rt.cfg['executor.name']}", {"executor.name": rt.cfg["executor.name"]})
    return _write_setting(rt, "executor.name", args[0])


def _task(rt, args, user, channel) -> Result:
    sub = args[0].lower() if args else "list"
    handler = TASK_COMMANDS.get(sub)
    if handler is None:
        raise InputError(f"unknown /task subcommand {sub!r}; try /help")
    return handler(rt, args[1:], user, channel)


def _scope(rt, user, channel) -> str:
    return scope_of(rt.cfg, user, channel)


def _task_list(rt, args, user, channel) -> Result:
    status = args[0] if args else "open"
    tasks = views.list_tasks(status, scope=_scope(rt, user, channel))
    rows = [views.task_view(t) for t in tasks]
    forced = _forced(user)
    text = "\n".join(f"{'*' if t['id'] == forced else ' '} #{t['id']} [{t['status']}] {t['title']}" for t in rows)
    return Result(text or f"no {status} tasks", rows)


def _forced(user: str) -> int | None:
    state = UserState.get_or_none(UserState.user_id == user)
    return state.forced_task_id if state else None


def _own_task(rt, value: Any, user: str, channel: str):
    task = views.get_task(value)
    if task.scope != _scope(rt, user, channel):
        raise service.NotFound(f"task {task.id} does not exist")
    return task


def _task_current(rt, args, user, channel) -> Result:
    forced = _forced(user)
    if forced is None:
        return Result("no task forced; messages are routed automatically", None)
    return Result(f"messages go to task #{forced}", {"task_id": forced})


def _task_use(rt, args, user, channel) -> Result:
    if len(args) != 1:
        raise InputError("usage: /task use ID  (or /task use none)")
    task_id = None if args[0].lower() == "none" else _own_task(rt, args[0], user, channel).id
    UserState.insert(user_id=user, forced_task=task_id, updated_at=now()).on_conflict(
        conflict_target=[UserState.user_id], preserve=[UserState.forced_task, UserState.updated_at]).execute()
    if task_id is None:
        return Result("messages are routed automatically again", {"task_id": None})
    return Result(f"your messages now go to task #{task_id}", {"task_id": task_id})


def _task_new(rt, args, user, channel) -> Result:
    from .models import Task
    title = " ".join(args).strip()[:200] or "untitled"
    task = Task.create(title=title, scope=_scope(rt, user, channel), user_id=user, channel_id=channel,
                       executor=rt.executor_name())
    UserState.insert(user_id=user, forced_task=task.id, updated_at=now()).on_conflict(
        conflict_target=[UserState.user_id], preserve=[UserState.forced_task, UserState.updated_at]).execute()
    return Result(f"task #{task.id} created and in use: {title}", views.task_view(task))


def _target(rt, args, user, channel):
    if args:
        return _own_task(rt, args[0], user, channel)
    forced = _forced(user)
    if forced is None:
        raise InputError("no current task; give an id (see /task list)")
    return _own_task(rt, forced, user, channel)


def _task_close(rt, args, user, channel) -> Result:
    task = service.close_task(_target(rt, args, user, channel).id, reason=f"closed by {user}")
    return Result(f"task #{task.id} closed", views.task_view(task))


def _task_reopen(rt, args, user, channel) -> Result:
    if len(args) != 1:
        raise InputError("usage: /task reopen ID")
    task = service.reopen_task(_own_task(rt, args[0], user, channel).id)
    return Result(f"task #{task.id} reopened", views.task_view(task))


def _task_memory(rt, args, user, channel) -> Result:
    if args and args[0] == "clear":
        task = _target(rt, args[1:], user, channel)
        clear_memory(task.id)
        return Result(f"memory of task #{task.id} cleared", {"task_id": task.id})
    task = _target(rt, args, user, channel)
    mem = TaskMemory.get_or_none(TaskMemory.task == task.id)
    if mem is None:
        return Result(f"task #{task.id} has no memory", None)
    lines = [f"task #{task.id}: {task.title}"]
    if mem.summary:
        lines += ["summary:", mem.summary]
    lines += ["recent turns:"] + [f"[{t['role']}] {t['content'][:300]}" for t in mem.turns]
    return Result("\n".join(lines), {"summary": mem.summary, "turns": mem.turns})


def _task_busy(rt, args, user, channel) -> Result:
    if not args or args[0] not in BUSY_POLICIES:
        raise InputError(f"usage: /task busy {'|'.join(BUSY_POLICIES)} [ID]")
    task = _target(rt, args[1:], user, channel)
    taskstate.set_workspace(task.id, busy_policy=args[0])
    return Result(f"task #{task.id}: busy policy {args[0]}", {"task_id": task.id, "busy_policy": args[0]})


def _task_repo(rt, args, user, channel) -> Result:
    if not args:
        raise InputError("usage: /task repo PATH [ID]")
    task = _target(rt, args[1:], user, channel)
    if task.branch and task.workspace_state == "active":
        raise Conflict(f"task {task.id} already works in a worktree of {task.repo}; merge or discard it first")
    repo = toplevel(args[0])
    taskstate.set_workspace(task.id, repo=str(repo))
    return Result(f"task #{task.id} will work in a worktree of {repo} (workspace.mode = worktree)",
                  {"task_id": task.id, "repo": str(repo)})


def _move(rt, args, user, channel, principal: Principal | None = None, source: str = "") -> Result:
    """/move N (the user's last message in this channel) or /move JOB N: see service.move."""
    if len(args) not in (1, 2) or not all(inputs.is_id(a) for a in args):
        raise InputError("usage: /move N  (your last message to task N)  or  /move JOB N")
    if len(args) == 1:
        last = Job.select(Job.id).where((Job.user_id == user) & (Job.channel_id == (channel or ""))).order_by(
            Job.id.desc()).limit(1).scalar()
        if last is None:
            raise InputError("you have sent no message here yet; nothing to move")
        job_id, task_id = last, args[0]
    else:
        job_id, task_id = args
    job, created = service.move(rt, job_id, task_id, as_user=user, who=user, source=source or "command")
    data = {"job_id": job.id, "moved_from": job.moved_from, "task_id": int(task_id), "created": created}
    if not created and job.id == int(job_id):
        return Result(f"job #{job.id} is already in task #{task_id}; nothing moved", data)
    if not created:
        return Result(f"job #{job.moved_from} was already moved to task #{task_id} (job #{job.id})", data)
    return Result(f"job #{job.moved_from} moved to task #{task_id}; it runs again there as job #{job.id}", data)


def _task_stats(rt, args, user, channel) -> Result:
    data = stats()
    return Result(format_stats(data), data)


COMMANDS: dict[str, Callable] = {"/help": _help, "/status": _status, "/config": _config, "/task": _task,
                                 "/move": _move}
ADMIN: dict[str, Callable] = {"/executor": _executor}
TASK_COMMANDS: dict[str, Callable] = {
    "list": _task_list, "current": _task_current, "use": _task_use, "new": _task_new, "close": _task_close,
    "reopen": _task_reopen, "memory": _task_memory, "stats": _task_stats, "busy": _task_busy, "repo": _task_repo}
