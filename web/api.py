"""The JSON API under /api: submit (sync, stream, async), follow, cancel and retry jobs; tasks; commands; status."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context, url_for

from alter0 import inputs, service, views
from alter0.commands import run_command
from alter0.errors import InputError
from alter0.models import Job, TERMINAL
from alter0.workspaces import actions

from . import openapi, status
from .db import get_rt
from .guard import UnsupportedMediaType, has_body
from .scoping import confined_user, own_job, own_task
from .security import acting_as, principal, require_token
from .streaming import CHUNK_DEFAULT, CHUNK_MAX, event_stream, message_stream

bp = Blueprint("api", __name__, url_prefix="/api")
bp.before_request(require_token)
#: Largest id the database can hold (SQLite INTEGER); larger ids name nothing.
MAX_ID = inputs.MAX_ID
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: Longest command, user id or channel id of POST /api/command.
COMMAND_MAX = openapi.COMMAND_MAX


# --- input helpers ----------------------------------------------------------------------------------

def json_body(required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object, or InputError (too_large over MAX_CONTENT_LENGTH, chunked or not)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    too_large = InputError(f"the body is over {limit} bytes (task.max_content_bytes)", code="too_large")
    if limit and (request.content_length or 0) > limit:
        raise too_large
    if has_body() and not request.is_json:
        raise UnsupportedMediaType("the body must be application/json")
    if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        raw = request.environ["wsgi.input"].read(limit + 1 if limit else -1)  # de-chunked by the server
    else:
        raw = request.get_data(cache=True)
    if limit and len(raw) > limit:
        raise too_large
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    except RecursionError:
        raise InputError("the body's JSON is nested too deeply", code="bad_json") from None
    if data is None and not required and not raw:
        return {}
    if not isinstance(data, dict):
        raise InputError('the body must be a JSON object, e.g. {"content": "...", "user_id": "..."}',
                         code="bad_json")
    return data


def arg_flag(name: str, default: bool = False) -> bool:
    """A 0/1 query parameter, as the OpenAPI document says (absent: ``default``; anything else, even empty: 400)."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw not in ("0", "1"):
        raise InputError(f"{name} must be 1 or 0")
    return raw == "1"


def arg_number(name: str, default: float | None, lo: float, hi: float, kind: type = int) -> Any:
    """An integer (or, with ``kind=float``, a decimal number) query parameter in [lo, hi]; absent: ``default``."""
    raw = request.args.get(name)
    if raw is None:
        return default
    return inputs.number_text(raw, name, lo, hi, kind)


def job_or_404(raw: str) -> Job:
    return own_job(views.get_job(raw))


def task_id(raw: str) -> int:
    return own_task(views.get_task(raw)).id


def submit(data: dict[str, Any]) -> tuple[Job, bool]:
    """Submit a message; Idempotency-Key (or request_id) makes a retried submit return the first job."""
    key = request.headers.get("Idempotency-Key") or data.get("request_id")
    user = acting_as(data.get("user_id"))
    if confined_user() is not None and data.get("task_id") not in (None, ""):
        own_task(views.get_task(data["task_id"]))
    return service.submit(get_rt(), data.get("content"), user, data.get("channel_id"), data.get("task_id"), key,
                          data.get("busy_policy"))


def job_location(job: Job) -> dict[str, str]:
    return {"Location": url_for("api.job", job_id=job.id)}


# --- messages and jobs ------------------------------------------------------------------------------

@bp.post("/message")
def message():
    """Submit and wait for the reply (or stream progress and the reply with ?stream=1)."""
    data = json_body()
    stream = arg_flag("stream")
    chunk_size = arg_number("chunk_size", CHUNK_DEFAULT, 1, CHUNK_MAX)
    job, _ = submit(data)
    cfg = get_rt().cfg
    if stream:
        limit = cfg["web.stream_timeout_sec"]
        body = stream_with_context(message_stream(job.id, chunk_size, limit))
        return Response(body, mimetype="application/x-ndjson", headers={"X-Job-Id": str(job.id), **STREAM_HEADERS})
    job = service.wait(job.id, cfg["web.sync_timeout_sec"])
    return sync_answer(job, cfg["web.sync_timeout_sec"])


def sync_answer(job: Job, waited: float):
    view = views.job_view(job)
    if job.status == "done":
        return jsonify({k: view[k] for k in ("job_id", "task_id", "response", "closed", "decision", "status")})
    if job.state not in TERMINAL:
        return jsonify(error={"code": "timeout", "job_id": job.id, "status": job.status,
                              "message": f"job {job.id} is still {job.status} after {waited:g}s; it goes on: "
                                         f"poll GET /api/jobs/{job.id}"},
                       job_id=job.id, status=job.status), 504, job_location(job)
    err = view["error"] or {}
    code, status_code = {"cancelled": ("job_cancelled", 409), "timed_out": ("job_timed_out", 502)}.get(
        job.status, ("job_failed", 502))
    return jsonify(error={"code": code, "job_id": job.id, "status": job.status, "kind": err.get("kind"),
                          "message": f"job {job.id} {job.status}: {err.get('message')}"},
                   job_id=job.id, status=job.status), status_code


@bp.post("/jobs")
def submit_job():
    """Submit without waiting: 202 with the job id and its Location."""
    job, created = submit(json_body())
    return jsonify(job_id=job.id, status=job.status, created=created), 202, job_location(job)


@bp.get("/jobs")
def jobs():
    return jsonify(views.list_jobs(request.args.get("status"), arg_number("task_id", None, 0, MAX_ID),
                                   arg_number("limit", 50, 1, 500), arg_number("cursor", None, 0, MAX_ID),
                                   user_id=confined_user()))


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    return jsonify(views.job_view(job_or_404(job_id), events=arg_flag("events")))


@bp.get("/jobs/<job_id>/events")
def job_events(job_id: str):
    """The job's timeline after a cursor, as NDJSON (default) or SSE; follows until the job ends."""
    found = job_or_404(job_id)
    after = arg_number("after", None, 0, MAX_ID)
    if after is None:
        last = request.headers.get("Last-Event-ID", "")
        after = int(last) if inputs.is_id(last) else 0
    fmt = request.args.get("format") or ("sse" if request.accept_mimetypes.best == "text/event-stream" else "ndjson")
    if fmt not in ("ndjson", "sse"):
        raise InputError("format must be ndjson or sse")
    cap = get_rt().cfg["web.stream_timeout_sec"]
    limit = min(cap, arg_number("timeout", cap, 0, 86400, float)) if arg_flag("follow", True) else 0.0
    body = stream_with_context(event_stream(found.id, after, limit, fmt == "sse"))
    mimetype = "text/event-stream" if fmt == "sse" else "application/x-ndjson"
    return Response(body, mimetype=mimetype, headers=STREAM_HEADERS)


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancel a queued or running job (the worker kills the executor); idempotent; 409 once it finished."""
    return jsonify(views.job_view(service.cancel(job_or_404(job_id).id)))


@bp.post("/jobs/<job_id>/retry")
def retry_job(job_id: str):
    job = service.retry(get_rt(), job_or_404(job_id).id)
    return jsonify(views.job_view(job)), 202, job_location(job)


@bp.post("/jobs/<job_id>/move")
def move_job(job_id: str):
    """Move a misrouted message to task N ({"task_id": N}): 202 with the new job that runs it there; a repeat
    answers 200 with that same job."""
    target = json_body().get("task_id")
    if not inputs.is_id(target):
        raise InputError('task_id must be a task id, e.g. {"task_id": 3}')
    me = principal()
    job, created = service.move(get_rt(), job_id, target, as_user=confined_user(),
                                who=me.user_id if me is not None else None, source=f"http {request.remote_addr}")
    return jsonify(views.job_view(job)), 202 if created else 200, job_location(job)


# --- tasks ------------------------------------------------------------------------------------------

@bp.get("/tasks")
def tasks():
    limit = arg_number("limit", 200, 1, 1000)
    found = views.list_tasks(request.args.get("status", "all"), request.args.get("scope") or None, limit,
                             user_id=confined_user())
    return jsonify(tasks=[views.task_view(t) for t in found])


@bp.get("/tasks/<tid>")
def task(tid: str):
    return jsonify(views.task_view(views.get_task(task_id(tid)), detail=True))


@bp.post("/tasks/<tid>/close")
def close_task(tid: str):
    reason = json_body(required=False).get("reason") or "closed by user"
    if not isinstance(reason, str) or len(reason) > 2000:
        raise InputError("reason must be a string of at most 2000 characters")
    return jsonify(views.task_view(service.close_task(task_id(tid), reason=reason)))


@bp.post("/tasks/<tid>/reopen")
def reopen_task(tid: str):
    return jsonify(views.task_view(service.reopen_task(task_id(tid))))


@bp.get("/tasks/<tid>/diff")
def task_diff(tid: str):
    """The task's diff against its base branch (?stat=1: files and counts only; ?raw=1: the whole diff as text)."""
    if arg_flag("raw"):
        return Response(actions.raw_diff(task_id(tid)), mimetype="text/plain")
    return jsonify(actions.diff(task_id(tid), stat_only=arg_flag("stat")))


@bp.post("/tasks/<tid>/merge")
def merge_task(tid: str):
    """Merge the task's branch into its base (409 listing the conflicts when it does not merge cleanly)."""
    return jsonify(actions.merge(get_rt().cfg, task_id(tid), squash=body_flag("squash"),
                                 who=f"api:{request.remote_addr}"))


@bp.post("/tasks/<tid>/discard")
def discard_task(tid: str):
    """Remove the task's worktree and branch (409 if it holds uncommitted changes, unless {"force": true})."""
    return jsonify(actions.discard(get_rt().cfg, task_id(tid), force=body_flag("force"),
                                   who=f"api:{request.remote_addr}"))


def body_flag(name: str) -> bool:
    """An optional boolean of the JSON body (default false)."""
    value = json_body(required=False).get(name, False)
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false")
    return value


# --- commands, status, spec -------------------------------------------------------------------------

@bp.post("/command")
def command():
    """Run a slash command through the CLI's interpreter (same admin rules and audit)."""
    data = json_body()
    caller = principal()
    text = inputs.text(data.get("command"), "command", required=False, limit=COMMAND_MAX) or ""
    user = inputs.text(acting_as(data.get("user_id")), "user_id", limit=COMMAND_MAX)
    channel = inputs.text(data.get("channel_id"), "channel_id", required=False, limit=COMMAND_MAX)
    result = run_command(get_rt(), text, user, channel, caller, f"http {request.remote_addr}")
    return jsonify(ok=result.ok, text=result.text, data=result.data)


@bp.get("/status")
def status_snapshot():
    """The operator's snapshot; the audit tail only for admins."""
    return jsonify(status.snapshot(get_rt(), admin=principal().admin))


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi.spec())
