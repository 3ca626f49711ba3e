"""``alter0`` send, chat, job, task, worker and status, the parser (with ops, web and bench commands) and main."""

from __future__ import annotations

import argparse
import sys
import time

from .. import liveness, service, views
from ..channels import state as channel_state
from ..commands import is_command, run_command
from ..config import BUSY_POLICIES
from ..database import sizes, storage_error
from ..errors import Alter0Error
from ..models import TERMINAL, JobEvent
from ..notify import notifier
from ..principals import cli_principal
from ..queue import run_worker
from . import bench, channel, notify, ops, progress, security, tracker, web, workspace
from .codes import RET_JOB_FAILED, RET_OK, RET_PENDING, RET_USAGE
from .common import fail as _fail, print_json as _print_json, runtime as _runtime
from .workspace import cmd_task_workspace, receipt_text


def cmd_send(args) -> int:
    rt = _runtime(args, queue=True)
    user = args.user or rt.cfg["task.cli_user_id"]
    if is_command(args.text):
        result = run_command(rt, args.text, user, args.channel or "", cli_principal(rt.cfg, user), "cli")
        _print_json(result.data) if args.json else print(result.text)
        return RET_OK
    job, _ = service.submit(rt, args.text, user, args.channel, args.task, args.request_id, args.busy_policy)
    if args.async_:
        _print_json({"job_id": job.id, "status": job.status}) if args.json else print(job.id)
        return RET_OK
    if not liveness.live_workers(rt.cfg):
        print(f"alter0: no worker is running; job {job.id} is queued and will be answered when one starts "
              f"(run `alter0 worker`, or `alter0 job show {job.id}` later)", file=sys.stderr)
    timeout = args.timeout or (rt.cfg["task.generation_timeout_sec"] + 60)
    if args.json or args.quiet or not sys.stderr.isatty():
        job = service.wait(job.id, timeout)
    else:  # a terminal: the stage, the routing decision and the executor's progress as they happen
        job = progress.follow(job.id, timeout)
    return _report_job(job, args.json)


def _report_job(job, as_json: bool) -> int:
    view = views.job_view(job)
    if as_json:
        _print_json({k: view[k] for k in ("job_id", "task_id", "decision", "response", "closed", "status", "error")})
    elif view["response"] is not None and job.status == "done":
        print(view["response"])
        print(f"[job {job.id} · task #{job.task_id} · {job.decision}"
              f"{' · task closed' if view['closed'] else ''}]", file=sys.stderr)
    if job.status == "done":
        return RET_OK
    if job.status not in {s.value for s in TERMINAL}:
        return _fail(f"job {job.id} is still {job.status}; follow it with `alter0 job show {job.id}`", RET_PENDING)
    err = view["error"] or {}
    return _fail(f"job {job.id} {job.status} ({err.get('kind')}): {err.get('message')}", RET_JOB_FAILED)


#: Longest ``job show --follow`` follows a job without --wait (the job goes on after).
FOLLOW_LIMIT_SEC = 24 * 3600.0


def cmd_job(args) -> int:
    _runtime(args, queue=args.action in ("retry", "move"))
    if args.action == "move":
        if args.task is None:
            return _fail("usage: alter0 job move JOB TASK  (move job JOB's message to task TASK)", RET_USAGE)
        rt = _runtime_cached()  # the local CLI is the operator: it may move anyone's job (audited)
        job, created = service.move(rt, args.id, args.task, who=rt.cfg["task.cli_user_id"], source="cli")
        if args.json:
            _print_json({**views.job_view(job), "created": created})
        elif created:
            print(f"job {job.moved_from} moved to task {args.task}: it runs again there as job {job.id}")
        else:
            print(f"nothing to move: job {job.id} is already in task {args.task}"
                  + (f" (moved there from job {job.moved_from})" if job.moved_from else ""))
        return RET_OK
    if args.task is not None:
        return _fail(f"alter0 job {args.action} takes one job id", RET_USAGE)
    if args.action == "show":
        if args.follow and not args.json:  # every timeline entry as it happens, until the job ends
            job = progress.follow(views.get_job(args.id).id, args.wait or FOLLOW_LIMIT_SEC, out=sys.stdout,
                                  live=sys.stdout.isatty(), every_event=True)
        elif args.follow:
            job = service.wait(args.id, args.wait or FOLLOW_LIMIT_SEC)
        else:
            job = service.wait(args.id, args.wait) if args.wait else views.get_job(args.id)
        view = views.job_view(job, events=args.events)
        if args.json:
            _print_json(view)
            return RET_OK
        for key in ("job_id", "status", "stage", "task_id", "decision", "response"):
            print(f"{key}: {view[key]}")
        print(f"error: {views.error_text(view['error']) or None}")
        if view["receipt"]:
            print(receipt_text(view["receipt"]))
        if args.events:
            print("events:")
            for e in JobEvent.select().where(JobEvent.job == job.id).order_by(JobEvent.id):
                print("  " + progress.timeline_line(e))
        return RET_OK
    if args.action == "cancel":
        job = service.cancel(args.id)
        _print_json(views.job_view(job)) if args.json else print(f"job {job.id}: {job.status}"
                                                                   f"{' (cancel requested)' if job.cancel_requested and job.status != 'cancelled' else ''}")
        return RET_OK
    job = service.retry(_runtime_cached(), args.id)
    _print_json(views.job_view(job)) if args.json else print(f"job {job.id}: {job.status}")
    return RET_OK


def _runtime_cached():
    from ..runtime import get_runtime
    return get_runtime()


def cmd_task(args) -> int:
    rt = _runtime(args)
    if args.action == "list":
        tasks = [views.task_view(t) for t in views.list_tasks(args.status)]
        if args.json:
            _print_json(tasks)
        else:
            for t in tasks:
                print(f"#{t['id']} [{t['status']}] {t['title']}")
        return RET_OK
    if args.action == "show":
        view = views.task_view(views.get_task(args.id), detail=True)
        if args.json:
            _print_json(view)
        else:
            u = view["usage"]
            print(f"#{view['id']} [{view['status']}] {view['title']}\nexecutor: {view['executor']} "
                  f"session: {view['session_id']}\nusage: {u['input_tokens']} in / {u['output_tokens']} out tokens, "
                  f"${u['cost_usd']:.4f}")
            for m in view["messages"]:
                print(f"[{m['role']}] {m['content']}")
        return RET_OK
    if args.action in ("diff", "merge", "discard"):
        return cmd_task_workspace(rt, args)
    fn = service.close_task if args.action == "close" else service.reopen_task
    task = fn(args.id)
    _print_json(views.task_view(task)) if args.json else print(f"task #{task.id}: {task.status}")
    _ = rt
    return RET_OK


def cmd_chat(args) -> int:
    rt = _runtime(args, queue=True)
    user = args.user or rt.cfg["task.cli_user_id"]
    print("alter0 chat — type a message or /help; Ctrl-D to quit", file=sys.stderr)
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return RET_OK
        if not line.strip():
            continue
        try:
            if is_command(line):
                print(run_command(rt, line, user, args.channel or "", cli_principal(rt.cfg, user), "cli").text)
                continue
            job, _ = service.submit(rt, line, user, args.channel)
            if not liveness.live_workers(rt.cfg):
                print(f"(no worker is running; job {job.id} waits in the queue — start `alter0 worker`)")
            job = service.wait(job.id, rt.cfg["task.generation_timeout_sec"] + 60)
            view = views.job_view(job)
            if job.status == "done":
                print(f"alter0 [task #{job.task_id}, {job.decision}]> {view['response']}")
            else:
                print(f"alter0> job {job.id} {job.status}: {(view['error'] or {}).get('message', '')}")
        except Alter0Error as exc:
            print(f"error: {exc.message}")
        except KeyboardInterrupt:
            print("(interrupted; the job goes on)")


def cmd_status(args) -> int:
    rt = _runtime(args)
    workers = liveness.live_workers(rt.cfg)
    data = {"output_dir": str(rt.output_dir), "backlog": views.backlog(),
            "workers": [{"id": w["id"], "pid": w["pid"], "host": w["host"], "state": w["state"],
                         "in_flight": w["in_flight"], "last_beat_age_sec": w["beat_age_sec"]} for w in workers],
            "storage": sizes(rt.cfg)}
    try:
        data["executor"] = rt.executor_name()
    except Alter0Error as exc:
        data["executor"] = f"unavailable: {exc.message}"
    data["channels"] = channel_state.snapshot(rt.cfg)
    data["notify"] = notifier.status(rt.cfg)
    if args.json:
        _print_json(data)
        return RET_OK
    print(f"output: {data['output_dir']}\nexecutor: {data['executor']}\nbacklog: " +
          ", ".join(f"{k} {v}" for k, v in data["backlog"].items()))
    print(f"database: {data['storage']['db_bytes']:,} bytes, WAL {data['storage']['wal_bytes']:,} bytes")
    print(f"workers alive: {len(workers)}" + "".join(
        f"\n  {w['id']} {w['state']} in-flight {w['in_flight']} beat {w['last_beat_age_sec']}s ago"
        for w in data["workers"]))
    for c in data["channels"]:
        print(f"channel {c['platform']}: {'connected' if c['connected'] else 'not connected'}, backlog "
              f"{c['backlog']}, last event {_ago(c['last_event_at'])}" +
              (f", last error {_ago(c['last_error_at'])}: {c['last_error']}" if c["last_error"] else ""))
    if data["notify"]["enabled"]:
        holder = data["notify"]["holder"]
        print(f"notifier: {'held by ' + holder['owner'] if holder else 'NOT RUNNING (no process holds its lease)'}")
    for w in data["notify"]["webhooks"]:
        print(f"webhook {w['target']} {w['url']}: backlog {w['backlog']}, delivered {w['delivered']}, failed "
              f"{w['failed']}, last delivery {_ago(w['last_delivery_at'])}" +
              (f", last error: {w['last_error']}" + (" (since delivered)" if w["last_error_resolved"] else "")
               if w["last_error"] else ""))
    return RET_OK


def _ago(t: float | None) -> str:
    return "never" if not t else f"{time.time() - t:.0f}s ago"


def setup_process_logging(rt, name: str) -> None:
    """JSON logs under output/logs when available, plain stderr otherwise."""
    from ..logging_setup import setup_logging
    setup_logging(rt.cfg, name)


def preflight_or_fail(config_path: str | None, process: str) -> int:
    """Run the start-up checks; print each problem as one line and return non-zero if any."""
    from ..ops.doctor import STARTUP_SKIP, run_preflight
    _, problems = run_preflight(config_path, skip=STARTUP_SKIP)
    for problem in problems:
        print(f"alter0 {process}: {problem}", file=sys.stderr)
    return RET_USAGE if problems else RET_OK


def cmd_worker(args) -> int:
    if not args.no_preflight and preflight_or_fail(args.config, "worker"):
        return RET_USAGE
    rt = _runtime(args)
    setup_process_logging(rt, "worker")
    stop = notifier.start(rt.cfg, "worker")
    try:
        run_worker(rt.cfg, workers=args.workers)
    finally:
        if stop is not None:
            stop.set()
    return RET_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alter0", description="Task orchestration in front of coding-agent CLIs.")
    p.add_argument("--config", help="config file (default config/config.json or $ALTER0_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("send", help="send one message (or /command) and print the answer")
    s.add_argument("text")
    s.add_argument("--user", help="user id (default task.cli_user_id)")
    s.add_argument("--channel", default="", help="channel id")
    s.add_argument("--task", help="send to this task id")
    s.add_argument("--request-id", help="idempotency key: a repeated send returns the first job")
    s.add_argument("--busy-policy", choices=BUSY_POLICIES, help="with --task, when that task is generating: "
                   "enqueue, reject, interrupt or collect (default the task's, else task.busy_policy)")
    s.add_argument("--async", dest="async_", action="store_true", help="print the job id and return at once")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout, no progress")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress on a terminal, only the answer")
    s.add_argument("--timeout", type=float, help="seconds to wait for the answer")
    s.set_defaults(fn=cmd_send)

    c = sub.add_parser("chat", help="interactive channel: messages and /commands")
    c.add_argument("--user")
    c.add_argument("--channel", default="")
    c.set_defaults(fn=cmd_chat)

    j = sub.add_parser("job", help="show, cancel, retry or move a job")
    j.add_argument("action", choices=("show", "cancel", "retry", "move"))
    j.add_argument("id")
    j.add_argument("task", nargs="?", help="with move: the task the job's message belongs to")
    j.add_argument("--json", action="store_true")
    j.add_argument("--events", action="store_true", help="include the job's timeline")
    j.add_argument("--follow", "-f", action="store_true", help="with show: print the timeline as it happens "
                   "until the job ends")
    j.add_argument("--wait", type=float, default=0, help="with show: wait (or --follow) up to N seconds for the "
                   "job to end")
    j.set_defaults(fn=cmd_job)

    t = sub.add_parser("task", help="list, show, close or reopen tasks")
    t.add_argument("action", choices=("list", "show", "close", "reopen", "diff", "merge", "discard"))
    t.add_argument("id", nargs="?")
    t.add_argument("--status", default="all", choices=("open", "closed", "all"))
    t.add_argument("--json", action="store_true")
    t.add_argument("--stat", action="store_true", help="with diff: files and +/- counts only")
    t.add_argument("--squash", action="store_true", help="with merge: one squashed commit on the base")
    t.add_argument("--force", action="store_true", help="with discard: also throw away uncommitted changes")
    t.set_defaults(fn=cmd_task)
    workspace.add_commands(sub)

    w = sub.add_parser("worker", help="run a worker (the queue consumer) in the foreground")
    w.add_argument("--workers", type=int, help="worker threads (default runtime.queue.workers)")
    w.add_argument("--no-preflight", action="store_true", help="skip the start-up checks (alter0 doctor)")
    w.set_defaults(fn=cmd_worker)

    st = sub.add_parser("status", help="queue backlog, live workers, executor")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    channel.add_commands(sub)
    tracker.add_commands(sub)
    notify.add_commands(sub)
    ops.add_commands(sub)
    web.add_commands(sub)
    bench.add_commands(sub)
    security.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "action", None) not in (None, "list") and args.command == "task" and not args.id:
        return _fail("task id required: alter0 task " + args.action + " ID", RET_USAGE)
    try:
        return args.fn(args)
    except Alter0Error as exc:
        return _fail(exc.message, exc.exit_code)
    except BrokenPipeError:
        return RET_OK
    except Exception as exc:  # a storage failure is one line (path and fix); anything else is a bug: traceback
        known = storage_error(exc)
        if known is None:
            raise
        return _fail(known.message, known.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
