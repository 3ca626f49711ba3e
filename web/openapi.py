"""The OpenAPI 3 document served at /api/openapi.json (tests/test_web_openapi.py keeps it in sync with the routes)."""

from __future__ import annotations

from typing import Any

from alter0.inputs import MAX_ID

ID = {"type": "string", "pattern": "^[0-9]+$"}
NULLABLE_STR = {"type": ["string", "null"]}
#: A required text: at least one character that is not blank.
NOT_BLANK = {"type": "string", "minLength": 1, "pattern": "\\S"}
#: Longest command, user id or channel id of POST /api/command.
COMMAND_MAX = 4000


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def ok(schema: dict | None = None, description: str = "OK", media: str = "application/json") -> dict:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {media: {"schema": schema}}
    return out


def errors(*codes: int) -> dict:
    """Error responses: 401 and 403 (foreign Host or Origin, another user's name, admin only) on every route."""
    text = {400: "Bad input", 401: "Missing, unknown, revoked or expired API token",
            403: "Not allowed: a foreign Host or Origin, a user token naming another user, or an admin command "
                 "without an admin token", 404: "Unknown id", 409: "Conflicts with the job's state",
            413: "Content over task.max_content_bytes", 415: "The body is not application/json",
            502: "The job failed", 504: "Still running after web.sync_timeout_sec (the job goes on)",
            503: "storage_unavailable: the database or output directory is corrupt, read-only, full or locked"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": ref("Error")}}}
            for c in sorted({401, 403, *codes, 503})}


def query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path_id(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": ID}


SUBMIT = {
    "type": "object", "required": ["content", "user_id"],
    "properties": {
        "content": {**NOT_BLANK, "description": "The message, not blank (at most task.max_content_bytes bytes, "
                                                "else 413)."},
        "user_id": {**NOT_BLANK, "maxLength": 200},
        "task_id": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_ID},
                              {"type": "string", "pattern": "^[0-9]{1,18}$"}, {"type": "null"}],
                    "description": "Send to this task (skips routing); an id, as a number or digits."},
        "channel_id": {"type": ["string", "null"], "maxLength": 200},
        "request_id": {"type": ["string", "null"], "maxLength": 200,
                       "description": "Idempotency key (same as the Idempotency-Key header)."},
        "busy_policy": {"enum": ["enqueue", "reject", "interrupt", "collect", None],
                        "description": "When task_id names a task whose generation is running: wait (enqueue), 409 "
                                       "task_busy (reject), cancel it (interrupt), or join the waiting turn (collect)."},
    },
}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"},
               "description": "A retried submit with the same key returns the first job."}
SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
    "Submit": SUBMIT,
    "Reply": {"type": "object", "required": ["job_id", "task_id", "response", "closed", "decision"], "properties": {
        "job_id": {"type": "integer"}, "task_id": {"type": ["integer", "null"]}, "response": NULLABLE_STR,
        "closed": {"type": "boolean"}, "decision": {"enum": ["existing", "new", None]}, "status": {"type": "string"}}},
    "Accepted": {"type": "object", "required": ["job_id", "status"], "properties": {
        "job_id": {"type": "integer"}, "status": {"type": "string"}, "created": {"type": "boolean"}}},
    "Job": {"type": "object", "required": ["job_id", "status", "stage", "task_id", "decision", "timings", "error"],
            "properties": {"job_id": {"type": "integer"}, "status": {"type": "string"},
                           "stage": NULLABLE_STR, "task_id": {"type": ["integer", "null"]},
                           "decision": NULLABLE_STR, "response": NULLABLE_STR, "timings": {"type": "object"},
                           "error": {"type": ["object", "null"]}, "events": {"type": "array"},
                           "receipt": {"type": ["object", "null"], "description": "What the turn changed, verified "
                                       "against git: commits, files, diffstat, check, verified, problems"},
                           "moved_from": {"type": ["integer", "null"],
                                          "description": "The misrouted job this one re-runs in its right task"}}},
    "JobPage": {"type": "object", "required": ["jobs", "next_cursor"], "properties": {
        "jobs": {"type": "array", "items": ref("Job")}, "next_cursor": {"type": ["integer", "null"]}}},
    "Task": {"type": "object", "required": ["id", "title", "status"], "properties": {
        "id": {"type": "integer"}, "title": {"type": "string"}, "status": {"enum": ["open", "closed"]},
        "messages": {"type": "array"}, "memory": {"type": ["object", "null"]}, "decisions": {"type": "array"},
        "busy": {"type": "object", "description": "busy, job_id (the running generation), waiting job ids"},
        "busy_policy": NULLABLE_STR, "workspace": {"type": ["object", "null"]}}},
    "Diff": {"type": "object", "required": ["task_id", "branch", "base", "files", "added", "deleted"], "properties": {
        "task_id": {"type": "integer"}, "branch": {"type": "string"}, "base": {"type": "string"},
        "merge_base": NULLABLE_STR, "files": {"type": "array"}, "added": {"type": "integer"},
        "deleted": {"type": "integer"}, "commits": {"type": "array"}, "uncommitted": {"type": "array"},
        "out_of_band": {"type": "object"}, "diff": {"type": "string"}, "truncated": {"type": "boolean"}}},
    "TaskList": {"type": "object", "required": ["tasks"],
                 "properties": {"tasks": {"type": "array", "items": ref("Task")}}},
    "Command": {"type": "object", "required": ["command", "user_id"], "properties": {
        "command": {"type": "string", "pattern": "^/", "maxLength": COMMAND_MAX, "example": "/task list",
                    "description": "A slash command (/help lists them); an unknown one or bad arguments: 400."},
        "user_id": {**NOT_BLANK, "maxLength": COMMAND_MAX},
        "channel_id": {"type": ["string", "null"], "maxLength": COMMAND_MAX}}},
    "CommandResult": {"type": "object", "required": ["ok", "text"], "properties": {
        "ok": {"type": "boolean"}, "text": {"type": "string"}, "data": {}}},
    "Status": {"type": "object", "required": ["gateway", "backlog", "workers", "in_flight", "executors"],
               "properties": {k: {} for k in ("gateway", "backlog", "workers", "in_flight", "executors",
                                              "maintenance", "channels", "notify", "audit_tail", "git_revision")}},
}
JOB_ID = [path_id("job_id")]
TASK_ID = [path_id("tid")]
NDJSON = "application/x-ndjson"
#: One Server-Sent Event of a job's timeline (its data: the event as JSON).
SSE_EVENT = {"type": "object", "required": ["event", "data"], "properties": {
    "id": {"type": "string", "pattern": "^[0-9]+$"}, "event": {"type": "string"},
    "data": {"type": "string", "contentMediaType": "application/json"}}}

PATHS: dict[str, dict] = {
    "/health": {"get": {"summary": "Liveness: process up, database reachable and writable", "security": [],
                        "responses": {"200": ok({"type": "object"}),
                                      "503": ok(ref("Error"), "Database down, or not writable (read-only, disk full)")}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
        "200": ok({"type": "string"}, media="text/plain"), **errors()}}},
    "/api/message": {"post": {
        "summary": "Submit a message and wait for the reply (or stream it with ?stream=1)",
        "parameters": [query("stream", {"enum": ["0", "1"]}, "1: NDJSON progress, reply chunks, done"),
                       query("chunk_size", {"type": "integer", "minimum": 1, "maximum": 4000},
                             "Characters per reply chunk when streaming (default 1200)"), IDEMPOTENCY],
        "requestBody": body(ref("Submit")),
        "responses": {"200": {"description": "The reply (or, with stream=1, an NDJSON stream)", "content": {
            "application/json": {"schema": ref("Reply")}, NDJSON: {"schema": {"type": "string"}}}},
            **errors(400, 404, 409, 413, 415, 502, 504)}}},
    "/api/jobs": {
        "post": {"summary": "Submit a message without waiting", "parameters": [IDEMPOTENCY],
                 "requestBody": body(ref("Submit")),
                 "responses": {"202": ok(ref("Accepted"), "Queued (Location: the job)"),
                               **errors(400, 404, 409, 413, 415)}},
        "get": {"summary": "Jobs, newest first, paginated", "parameters": [
            query("status", {"enum": ["queued", "routing", "generating", "closing", "done", "failed", "cancelled",
                                      "timed_out"]}, "Only jobs in this state"),
            query("task_id", {"type": "integer", "minimum": 0, "maximum": MAX_ID}, "Only jobs of this task"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size (default 50)"),
            query("cursor", {"type": "integer", "minimum": 0, "maximum": MAX_ID}, "next_cursor of the previous page")],
            "responses": {"200": ok(ref("JobPage")), **errors(400)}}},
    "/api/jobs/{job_id}": {"get": {
        "summary": "A job: status, stage, timings, decision, reply, error", "parameters": JOB_ID + [
            query("events", {"enum": ["0", "1"]}, "1: include the timeline")],
        "responses": {"200": ok(ref("Job")), **errors(400, 404)}}},
    "/api/jobs/{job_id}/events": {"get": {
        "summary": "Follow a job's timeline from a cursor (NDJSON or SSE) until it ends", "parameters": JOB_ID + [
            query("after", {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                  "Return events with seq > after (or Last-Event-ID)"),
            query("follow", {"enum": ["0", "1"]}, "0: the events so far, then stop"),
            query("format", {"enum": ["ndjson", "sse"]}, "Default: sse if Accept is text/event-stream"),
            query("timeout", {"type": "number", "minimum": 0, "maximum": 86400},
                  "Stop following after this many seconds (at most web.stream_timeout_sec)")],
        "responses": {"200": {"description": "Event stream: one JSON object per line (NDJSON), or one SSE event "
                              "each (id: the event's seq; event: its kind, or end / timeout last)", "content": {
            NDJSON: {"schema": {"type": "string"}}, "text/event-stream": {"schema": SSE_EVENT}}},
            **errors(400, 404)}}},
    "/api/jobs/{job_id}/cancel": {"post": {
        "summary": "Cancel a queued or running job (kills the executor); idempotent", "parameters": JOB_ID,
        "responses": {"200": ok(ref("Job")), **errors(404, 409)}}},
    "/api/jobs/{job_id}/retry": {"post": {
        "summary": "Run a failed, cancelled or timed-out job again", "parameters": JOB_ID,
        "responses": {"202": ok(ref("Job")), **errors(404, 409)}}},
    "/api/jobs/{job_id}/move": {"post": {
        "summary": "Move a misrouted message to another task of its scope, where it runs again as a new job "
                   "(moved_from: this job); its turn leaves the old task's memory; exactly once (a repeat answers "
                   "200 with the same job); a job still running answers 409", "parameters": JOB_ID,
        "requestBody": body({"type": "object", "required": ["task_id"],
                             "properties": {"task_id": {"type": "integer", "minimum": 1}}}),
        "responses": {"202": ok(ref("Job"), "Moved: the new job (Location)"),
                      "200": ok(ref("Job"), "Already moved there (or already in that task): that job"),
                      **errors(400, 404, 409, 415)}}},
    "/api/tasks": {"get": {"summary": "Tasks", "parameters": [
        query("status", {"enum": ["open", "closed", "all"]}, "Default all"),
        query("scope", {"type": "string"}, "Only tasks of this scope (user:<id> or channel:<id>)"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Default 200")],
        "responses": {"200": ok(ref("TaskList")), **errors(400)}}},
    "/api/tasks/{tid}": {"get": {
        "summary": "A task with messages, memory snapshot and routing/closing decisions", "parameters": TASK_ID,
        "responses": {"200": ok(ref("Task")), **errors(400, 404)}}},
    "/api/tasks/{tid}/close": {"post": {
        "summary": "Close a task", "parameters": TASK_ID,
        "requestBody": body({"type": "object", "properties": {"reason": {"type": "string"}}}, required=False),
        "responses": {"200": ok(ref("Task")), **errors(400, 404, 415)}}},
    "/api/tasks/{tid}/reopen": {"post": {
        "summary": "Reopen a task", "parameters": TASK_ID, "responses": {"200": ok(ref("Task")), **errors(400, 404)}}},
    "/api/tasks/{tid}/diff": {"get": {
        "summary": "The task's changes against its base branch's merge base, files, +/- counts, out-of-band changes",
        "parameters": TASK_ID + [query("stat", {"enum": ["0", "1"]}, "1: summary only (no unified diff)"),
                                 query("raw", {"enum": ["0", "1"]}, "1: the whole diff as text/plain")],
        "responses": {"200": ok(ref("Diff")), **errors(400, 404, 409)}}},
    "/api/tasks/{tid}/merge": {"post": {
        "summary": "Merge the task's branch into its base (fast-forward or merge commit; squash: one commit); "
                   "ends the worktree and closes the task", "parameters": TASK_ID,
        "requestBody": body({"type": "object", "properties": {"squash": {"type": "boolean"}}}, required=False),
        "responses": {"200": ok({"type": "object"}), **errors(400, 404, 409)}}},
    "/api/tasks/{tid}/discard": {"post": {
        "summary": "Discard the task's worktree and branch; closes the task", "parameters": TASK_ID,
        "requestBody": body({"type": "object", "properties": {"force": {"type": "boolean"}}}, required=False),
        "responses": {"200": ok({"type": "object"}), **errors(400, 404, 409)}}},
    "/api/command": {"post": {
        "summary": "Run a slash command through the CLI's interpreter (admin rules and audit apply)",
        "requestBody": body(ref("Command")),
        "responses": {"200": ok(ref("CommandResult")), **errors(400, 403, 404, 415)}}},
    "/api/status": {"get": {"summary": "One operator snapshot",
                            "responses": {"200": ok(ref("Status")), **errors()}}},
    "/api/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": ok({"type": "object"}), **errors()}}},
}


def spec() -> dict:
    """The document (OpenAPI 3.1: nullable types are written as type lists)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "alter0", "version": "1", "description":
                 "Submit messages as jobs (route, generate, close run in the worker), follow, cancel and retry "
                 "them; read and close tasks; run slash commands. Errors are {\"error\": {\"code\", \"message\"}}. "
                 "Bodies must be application/json; requests with a foreign Origin or Host are refused (403)."},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
    }
