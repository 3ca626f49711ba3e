"""The web console: chat, tasks, jobs (the queue view) and status pages; server-rendered, forms carry CSRF."""

from __future__ import annotations

import time

from flask import (Blueprint, Response, flash, jsonify, redirect, render_template, request, session,
                   stream_with_context, url_for)

from alter0 import service, views
from alter0.commands import is_command, run_command
from alter0.taskstate import scope_of
from alter0.errors import Alter0Error, Forbidden, InputError
from alter0.models import Job, UserState
from alter0.ops import stats
from alter0.workspaces import actions
from alter0.workspaces.merge import MergeConflict
from alter0.workspaces.review import split_files

from . import status
from .api import json_body, task_id as parse_tid, job_or_404
from .db import get_rt
from .scoping import confined_user
from .security import check_csrf, login as token_login, principal
from .streaming import CHUNK_DEFAULT, message_stream

bp = Blueprint("console", __name__)
RUNNING = ("routing", "generating", "closing")
ENDED = ("failed", "timed_out", "cancelled")


@bp.before_request
def guard():
    """Login when a token is configured; CSRF on every POST."""
    if principal() is None and request.endpoint not in ("console.login", "static"):
        return redirect(url_for("console.login", next=request.full_path))
    if request.method == "POST":
        check_csrf()
    return None


@bp.app_template_filter("ago")
def ago(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, time.time() - ts)
    return f"{s:.0f}s" if s < 90 else f"{s / 60:.0f}m" if s < 5400 else f"{s / 3600:.1f}h" if s < 172800 \
        else f"{s / 86400:.0f}d"


@bp.app_template_filter("when")
def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def user() -> str:
    """The console's user: the logged-in token's, else (tokenless mode only) the one picked in "You are"."""
    me = principal()
    picked = session.get("user_id") if me.via == "loopback" else None
    return me.user_id or picked or get_rt().cfg["task.cli_user_id"]


def command(content: str):
    """Run a slash command as the console's user, with the rights its principal proves."""
    return run_command(get_rt(), content, user(), "", principal(), f"console {request.remote_addr}")


def back(default: str):
    target = request.form.get("next") or ""
    return redirect(target if target.startswith("/") and not target.startswith("//") else url_for(default))


# --- login ------------------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        if token_login(request.form.get("token", "")):
            target = request.args.get("next") or "/"
            return redirect(target if target.startswith("/") and not target.startswith("//") else "/")
        flash("wrong token", "error")
    return render_template("login.html")


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login"))


# --- chat -------------------------------------------------------------------------------------------

def chat_context(**extra):
    me = user()
    scope = scope_of(get_rt().cfg, me, "")
    state = UserState.get_or_none(UserState.user_id == me)
    return dict(user_id=me, tasks=[views.task_view(t) for t in views.list_tasks("open", scope=scope, limit=50)],
                forced=state.forced_task_id if state else None, pick_user=principal().via == "loopback",
                admin=principal().admin, **extra)


@bp.get("/")
def chat():
    return render_template("chat.html", **chat_context())


@bp.post("/")
def chat_form():
    """The chat without JavaScript: run the command, or submit and wait for the reply."""
    content = request.form.get("content", "")
    try:
        if is_command(content):
            result = command(content)
            return render_template("chat.html", **chat_context(sent=content, command=result.text))
        job, _ = service.submit(get_rt(), content, user())
        job = service.wait(job.id, get_rt().cfg["web.sync_timeout_sec"])
        return render_template("chat.html", **chat_context(sent=content, job=views.job_view(job)))
    except Alter0Error as exc:
        flash(exc.message, "error")
        return render_template("chat.html", **chat_context(sent=content)), exc.status


@bp.post("/chat/send")
def chat_send():
    """JSON in; a command answers JSON, a message streams NDJSON like POST /api/message?stream=1."""
    data = json_body()
    content = data.get("content")
    if is_command(content):
        result = command(content)
        return jsonify(type="command", text=result.text, data=result.data)
    job, _ = service.submit(get_rt(), content, user(), None, data.get("task_id") or None)
    body = stream_with_context(message_stream(job.id, CHUNK_DEFAULT, get_rt().cfg["web.stream_timeout_sec"]))
    return Response(body, mimetype="application/x-ndjson",
                    headers={"X-Job-Id": str(job.id), "Cache-Control": "no-cache"})


@bp.post("/user")
def set_user():
    """Tokenless mode only: pick who you are (never an admin: admin commands need an admin token)."""
    if principal().via != "loopback":
        raise Forbidden("you are the user of the token you logged in with; log in with another token to change")
    name = (request.form.get("user_id") or "").strip()
    if not name or len(name) > 200:
        flash("a user id is 1 to 200 characters", "error")
    else:
        session["user_id"] = name
    return redirect(url_for("console.chat"))


# --- tasks ------------------------------------------------------------------------------------------

@bp.get("/tasks")
def tasks():
    which = request.args.get("status", "open")
    if which not in ("open", "closed", "all"):
        raise InputError("status must be open, closed or all")
    return render_template("tasks.html", which=which,
                           tasks=[views.task_view(t) for t in views.list_tasks(which, limit=500,
                                                                               user_id=confined_user())])


@bp.get("/tasks/<tid>")
def task(tid: str):
    view = views.task_view(views.get_task(parse_tid(tid)), detail=True)
    diff, diff_error = None, None
    if view["workspace"] and view["workspace"]["state"] in ("active", "removed"):
        try:
            diff = actions.diff(view["id"])
            diff["by_file"] = split_files(diff["diff"])
        except Alter0Error as exc:
            diff_error = exc.message
    return render_template("task.html", task=view, diff=diff, diff_error=diff_error)


@bp.get("/tasks/<tid>/diff.txt")
def task_raw_diff(tid: str):
    return Response(actions.raw_diff(parse_tid(tid)), mimetype="text/plain")


@bp.post("/tasks/<tid>/<action>")
def task_action(tid: str, action: str):
    if action not in ("close", "reopen", "merge", "discard"):
        raise InputError("action must be close, reopen, merge or discard")
    try:
        if action in ("merge", "discard"):
            return _decide(parse_tid(tid), action)
        found = service.close_task(parse_tid(tid), reason=f"closed by {user()} in the console") \
            if action == "close" else service.reopen_task(parse_tid(tid))
        flash(f"task #{found.id} {found.status}", "ok")
    except Alter0Error as exc:
        flash(exc.message, "error")
    return redirect(url_for("console.task", tid=tid))


def _decide(tid: int, action: str):
    """Merge (squash when the form says so) or discard a task's workspace from its page."""
    who = f"console:{user()}"
    try:
        if action == "merge":
            result = actions.merge(get_rt().cfg, tid, squash=request.form.get("squash") == "1", who=who)
            flash(f"task #{tid}: merged {result['branch']} into {result['base']} ({result['sha'][:12]})", "ok")
        else:
            actions.discard(get_rt().cfg, tid, force=request.form.get("force") == "1", who=who)
            flash(f"task #{tid}: workspace discarded", "ok")
    except MergeConflict as exc:
        flash(f"{exc.message}: {', '.join(exc.data['conflicts'])}", "error")
        session["conflict_details"] = exc.data["details"][:4000]
    return redirect(url_for("console.task", tid=tid))


# --- jobs -------------------------------------------------------------------------------------------

def _jobs(states, limit: int) -> list[dict]:
    found, user = [], confined_user()
    for s in states:
        q = Job.select().where(Job.status == s) if user is None else Job.select().where(Job.status == s,
                                                                                        Job.user_id == user)
        found += [views.job_view(j) for j in q.order_by(Job.id.desc()).limit(limit)]
    return sorted(found, key=lambda j: -j["job_id"])[:limit]


def jobs_context() -> dict:
    return {"sections": [("queued", "Queued", _jobs(["queued"], 50)), ("running", "Running", _jobs(RUNNING, 50)),
                         ("failed", "Failed, timed out, cancelled", _jobs(ENDED, 25)),
                         ("done", "Done", _jobs(["done"], 25))],
            "backlog": views.backlog_by_stage(), "durations": stats.stats()["durations_sec"],
            "workers": status.workers(get_rt().cfg), "now": time.time()}


@bp.get("/jobs")
def jobs():
    if request.args.get("partial"):
        return render_template("_jobs.html", **jobs_context())
    return render_template("jobs.html", **jobs_context())


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    found = job_or_404(job_id)
    targets = [t for t in views.list_tasks("open", scope=found.scope, limit=50) if t.id != found.task_id]
    return render_template("job.html", job=views.job_view(found, events=True), move_targets=targets)


@bp.post("/jobs/<job_id>/<action>")
def job_action(job_id: str, action: str):
    if action not in ("cancel", "retry", "move"):
        raise InputError("action must be cancel, retry or move")
    try:
        found = job_or_404(job_id)
        if action == "move":  # "Move to task…": the message runs again in the chosen task (service.move)
            moved, created = service.move(get_rt(), found.id, request.form.get("task_id"), as_user=confined_user(),
                                          who=user(), source=f"console {request.remote_addr}")
            flash(f"job {found.id} moved to task {moved.task_id or request.form.get('task_id')}: it runs again "
                  f"there as job {moved.id}" if created else f"nothing to move: job {moved.id} is already there",
                  "ok")
            return redirect(url_for("console.job", job_id=moved.id))
        found = service.cancel(found.id) if action == "cancel" else service.retry(get_rt(), found.id)
        note = " (cancel requested; the worker stops the executor)" if found.status not in ENDED and \
            action == "cancel" else ""
        flash(f"job {found.id}: {found.status}{note}", "ok")
    except Alter0Error as exc:
        flash(exc.message, "error")
    return back("console.jobs")


# --- status -----------------------------------------------------------------------------------------

@bp.get("/status")
def status_page():
    return render_template("status.html", s=status.snapshot(get_rt(), admin=principal().admin))
