"""Peewee models: tasks, messages, jobs and their timeline, task memory, per-user state, workers, API tokens."""

from __future__ import annotations

import json
import time
from enum import Enum

from peewee import (AutoField, BooleanField, CharField, CompositeKey, DatabaseProxy, DoubleField, ForeignKeyField,
                    IntegerField, Model, TextField)

from .faults import CLOCK_SKEW

db = DatabaseProxy()


def now() -> float:
    """This host's wall-clock seconds since the epoch (leases and heartbeats use ``clock.db_now``)."""
    return time.time() + CLOCK_SKEW


#: ``json.dumps(value, ensure_ascii=False, sort_keys=True)`` without building an encoder per call (a message
#: writes some fifteen JSON fields).
_ENCODE = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


class JSONField(TextField):
    """A JSON document stored as text."""

    def db_value(self, value):
        return None if value is None else _ENCODE(value)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class JobStatus(str, Enum):
    """The states of a job; the allowed moves live in alter0.jobstate."""

    QUEUED = "queued"
    ROUTING = "routing"
    GENERATING = "generating"
    CLOSING = "closing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT})
#: Status values of jobs not finished yet (the one list of them).
ACTIVE = tuple(s.value for s in JobStatus if s not in TERMINAL)
#: The one state -> stage map: the stage a job in this state waits for or runs.
STAGE_OF_STATE = {JobStatus.QUEUED: "route", JobStatus.ROUTING: "route",
                  JobStatus.GENERATING: "generate", JobStatus.CLOSING: "close"}
#: The inverse: the states in which a stage may run.
STATES_OF_STAGE = {stage: tuple(s for s, st in STAGE_OF_STATE.items() if st == stage)
                   for stage in ("route", "generate", "close")}


def stage_of(status: str | JobStatus) -> str | None:
    """The stage a job in ``status`` waits for or runs; None for a finished job."""
    return STAGE_OF_STATE.get(JobStatus(status))


class BaseModel(Model):
    class Meta:
        database = db


class Task(BaseModel):
    """A conversation with an executor: the unit messages are routed to."""

    id = AutoField()
    title = CharField(max_length=200)
    status = CharField(max_length=16, default="open", index=True)  # open | closed
    scope = CharField(max_length=300)  # "user:<id>" or "channel:<id>" (indexed with status: see Meta)
    user_id = CharField(max_length=200)
    channel_id = CharField(max_length=200, default="")
    executor = CharField(max_length=32, default="")
    session_id = CharField(max_length=200, null=True)  # the executor's own thread/session id
    session_usage = JSONField(null=True)  # running totals the executor last reported for session_id (codex)
    created_at = DoubleField(default=now)
    updated_at = DoubleField(default=now)
    last_active_at = DoubleField(default=now, index=True)
    closed_at = DoubleField(null=True)
    closed_by = CharField(max_length=16, null=True)  # auto | manual
    close_reason = TextField(null=True)
    close_confidence = DoubleField(null=True)
    input_tokens = IntegerField(default=0)
    output_tokens = IntegerField(default=0)
    cost_usd = DoubleField(default=0.0)
    repo = TextField(null=True)  # the task's own git repository (else workspace.repo)
    branch = CharField(max_length=200, null=True)  # its worktree's branch, once made
    base = CharField(max_length=200, null=True)  # the branch it started from and merges into
    worktree = TextField(null=True)  # its worktree's path, once made
    workspace_state = CharField(max_length=16, null=True)  # active | merged | discarded | removed
    busy_policy = CharField(max_length=16, null=True)  # the task's own task.busy_policy

    class Meta:
        #: a scope's open tasks (the router's candidates) are found without reading every open task of every
        #: scope; the scope alone is this index's prefix
        indexes = ((("scope", "status"), False),)


class Message(BaseModel):
    """One user or assistant turn of a task."""

    id = AutoField()
    task = ForeignKeyField(Task, backref="messages", on_delete="CASCADE", index=True)
    role = CharField(max_length=16)  # user | assistant
    content = TextField()
    user_id = CharField(max_length=200)
    channel_id = CharField(max_length=200, default="")
    created_at = DoubleField(default=now)


class Job(BaseModel):
    """One incoming user message on its way through route, generate and close."""

    id = AutoField()
    request_id = CharField(max_length=200, null=True, unique=True)
    status = CharField(max_length=16, default=JobStatus.QUEUED.value)  # indexed with scope: see Meta
    content = TextField()
    user_id = CharField(max_length=200)
    channel_id = CharField(max_length=200, default="")
    scope = CharField(max_length=300)  # indexed with status: see Meta
    requested_task_id = IntegerField(null=True)
    task = ForeignKeyField(Task, null=True, backref="jobs", on_delete="SET NULL", index=True)
    user_message = ForeignKeyField(Message, null=True, on_delete="SET NULL")
    reply_message = ForeignKeyField(Message, null=True, on_delete="SET NULL")
    created_at = DoubleField(default=now)
    updated_at = DoubleField(default=now)
    routing_at = DoubleField(null=True)
    generating_at = DoubleField(null=True)
    closing_at = DoubleField(null=True)
    finished_at = DoubleField(null=True, index=True)  # the notification feed scans it
    route_attempts = IntegerField(default=0)
    generate_attempts = IntegerField(default=0)
    close_attempts = IntegerField(default=0)
    error_kind = CharField(max_length=32, null=True)
    error = TextField(null=True)
    decision = CharField(max_length=16, null=True)  # existing | new
    decision_source = CharField(max_length=16, null=True)  # moved | forced | explicit | thread | router | new
    route_confidence = DoubleField(null=True)
    route_reason = TextField(null=True)
    route_version = CharField(max_length=64, null=True)
    close_decision = BooleanField(null=True)
    close_confidence = DoubleField(null=True)
    close_reason = TextField(null=True)
    close_version = CharField(max_length=64, null=True)
    cancel_requested = BooleanField(default=False)
    lease_owner = CharField(max_length=200, null=True)
    lease_expires = DoubleField(null=True)
    stage_started_at = DoubleField(null=True)
    dispatched_at = DoubleField(null=True)  # last time a stage message was put on the queue
    parked = BooleanField(default=False)  # waiting for an earlier job's turn (no queue message held)
    executor_pgid = IntegerField(null=True)  # process group of the running executor (killed if its worker dies)
    thread_key = CharField(max_length=200, null=True)  # a chat thread/topic/reply the message came from
    moved_from = IntegerField(null=True, index=True)  # the misrouted job this one re-runs in its right task
    input_tokens = IntegerField(default=0)
    output_tokens = IntegerField(default=0)
    cost_usd = DoubleField(default=0.0)

    @property
    def state(self) -> JobStatus:
        return JobStatus(self.status)

    class Meta:
        #: the jobs in a state (the sweeps), and those of a scope in a state: an earlier job of the scope still
        #: routing (``turns``) is found without reading the scope's whole history. One index holds the status,
        #: as before: a job's moves from state to state update one index entry each.
        indexes = ((("status", "scope"), False),)


class Receipt(BaseModel):
    """What one generation changed in its task's worktree, read from git (not from the agent's text)."""

    id = AutoField()
    job = ForeignKeyField(Job, backref="receipts", on_delete="CASCADE", index=True)
    task = ForeignKeyField(Task, backref="receipts", on_delete="CASCADE", index=True)
    branch = CharField(max_length=200)
    start_sha = CharField(max_length=64, null=True)  # the branch tip before the turn
    end_sha = CharField(max_length=64, null=True)  # the branch tip after it
    commits = JSONField(default=list)  # [{sha, subject}] the turn added
    files = JSONField(default=list)  # [{path, added, deleted}]
    uncommitted = JSONField(default=list)  # paths left changed but not committed
    claimed = JSONField(default=list)  # commit ids the agent's reply names
    check = JSONField(null=True)  # {argv, exit_code, duration_sec, output_tail, timed_out}
    verified = BooleanField(default=False)
    problems = JSONField(default=list)  # why it is not verified
    created_at = DoubleField(default=now)


class JobEvent(BaseModel):
    """Append-only timeline of a job, read in ``id`` order."""

    id = AutoField()
    job = ForeignKeyField(Job, backref="events", on_delete="CASCADE", index=True)
    kind = CharField(max_length=48)
    stage = CharField(max_length=16, null=True)
    data = JSONField(null=True)
    created_at = DoubleField(default=now)


class TaskMemory(BaseModel):
    """Bounded snapshot of a task used to build the executor prompt."""

    task = ForeignKeyField(Task, primary_key=True, backref="memory", on_delete="CASCADE")
    summary = TextField(default="")
    turns = JSONField(default=list)  # [{role, content, user_id, at}]
    turn_count = IntegerField(default=0)
    participants = JSONField(default=list)
    updated_at = DoubleField(default=now)


class UserState(BaseModel):
    """Per-user state: the task forced with /task use."""

    user_id = CharField(max_length=200, primary_key=True)
    forced_task = ForeignKeyField(Task, null=True, on_delete="SET NULL")
    updated_at = DoubleField(default=now)


class Worker(BaseModel):
    """A worker process seen alive: its heartbeat and in-flight count."""

    id = CharField(max_length=200, primary_key=True)
    host = CharField(max_length=200)
    pid = IntegerField()
    started_at = DoubleField(default=now)
    last_beat = DoubleField(default=now)
    in_flight = IntegerField(default=0)
    state = CharField(max_length=16, default="running")  # running | draining | stopped


class SchemaVersion(BaseModel):
    """Applied schema migrations."""

    version = IntegerField(primary_key=True)
    applied_at = DoubleField(default=now)
    note = TextField(default="")


class MaintenanceState(BaseModel):
    """Last run of each maintenance job."""

    name = CharField(max_length=64, primary_key=True)
    last_run = DoubleField(null=True)
    last_error = TextField(null=True)
    consecutive_failures = IntegerField(default=0)


class ApiToken(BaseModel):
    """A per-user API token (``alter0 token create``): only its sha256 is stored; the token is shown once."""

    id = AutoField()
    user_id = CharField(max_length=200)
    admin = BooleanField(default=False)
    digest = CharField(max_length=64, unique=True)  # sha256 hex of the token
    prefix = CharField(max_length=16)  # the token's first characters, to recognise it in lists
    note = TextField(default="")
    created_at = DoubleField(default=now)
    expires_at = DoubleField(null=True)
    revoked_at = DoubleField(null=True)


class ThreadBinding(BaseModel):
    """A chat thread (forum topic, reply chain, Matrix thread) bound to one task: a hard routing signal."""

    channel_id = CharField(max_length=200)
    thread_key = CharField(max_length=200)
    task = ForeignKeyField(Task, on_delete="CASCADE")
    created_at = DoubleField(default=now)

    class Meta:
        primary_key = CompositeKey("channel_id", "thread_key")


class ChannelEvent(BaseModel):
    """The inbox: one row per incoming platform event, recorded before anything acts on it."""

    id = AutoField()
    platform = CharField(max_length=32)
    event_id = CharField(max_length=200)
    kind = CharField(max_length=24)  # message | command | callback | edit | unsupported | refused | stale
    user_id = CharField(max_length=200, default="")
    channel_id = CharField(max_length=200, default="")
    thread_key = CharField(max_length=200, null=True)
    content = TextField(default="")
    platform_message_id = CharField(max_length=200, null=True)
    payload = JSONField(null=True)  # what the channel needs to answer (chat id, topic id)
    state = CharField(max_length=16, default="received", index=True)  # received|submitted|answered|refused|ignored|done|stale|error
    job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
    detail = TextField(null=True)
    created_at = DoubleField(default=now)

    class Meta:
        indexes = ((("platform", "event_id"), True),)


class ChannelDelivery(BaseModel):
    """The outbox: one reply, notice or progress edit to send to a platform, with attempts and backoff."""

    id = AutoField()
    platform = CharField(max_length=32)
    key = CharField(max_length=200, unique=True)  # what makes it one delivery (e.g. "reply:<job>:<part>")
    event = ForeignKeyField(ChannelEvent, null=True, on_delete="SET NULL")
    method = CharField(max_length=48)
    payload = JSONField()
    state = CharField(max_length=16, default="pending", index=True)  # pending | delivered | failed
    attempts = IntegerField(default=0)
    next_at = DoubleField(default=now)
    last_error = TextField(null=True)
    result_id = CharField(max_length=200, null=True)  # the platform's id of the message sent
    created_at = DoubleField(default=now)
    delivered_at = DoubleField(null=True)


class ChannelState(BaseModel):
    """A channel process's state: its platform cursor (update offset), connection and last error."""

    platform = CharField(max_length=32, primary_key=True)
    cursor = CharField(max_length=200, null=True)
    connected = BooleanField(default=False)
    started_at = DoubleField(null=True)
    last_poll_at = DoubleField(null=True)
    last_event_at = DoubleField(null=True)
    last_error = TextField(null=True)
    last_error_at = DoubleField(null=True)


class NotifyEvent(BaseModel):
    """The notification feed: one row per job outcome, task close or worker change, written once (unique key)."""

    id = AutoField()
    key = CharField(max_length=200, unique=True)  # e.g. "job.done:12:<finish stamp>": the same fact is one event
    kind = CharField(max_length=32)  # job.done | job.failed | job.timed_out | task.closed | worker.down | worker.up
    subject = CharField(max_length=220, index=True)  # "job:12", "task:3", "worker:<id>"
    payload = JSONField()  # the summary subscribers send (job, task, worker), taken when the event was made
    created_at = DoubleField(default=now)


class NotifyCursor(BaseModel):
    """How far a reader got: the feed's producers (a time) and each subscriber (a NotifyEvent id)."""

    name = CharField(max_length=64, primary_key=True)  # feed.start | feed.jobs | feed.tasks | webhook:<id> | channel:<p>
    position = DoubleField(default=0)
    active = BooleanField(default=True)
    updated_at = DoubleField(default=now)


class Lease(BaseModel):
    """A named database-side lease: of several processes that could do a job, the holder does it."""

    name = CharField(max_length=64, primary_key=True)
    owner = CharField(max_length=200)
    expires_at = DoubleField()


CHANNEL_MODELS = (ThreadBinding, ChannelEvent, ChannelDelivery, ChannelState)
NOTIFY_MODELS = (NotifyEvent, NotifyCursor, Lease)
ALL_MODELS = (Task, Message, Job, Receipt, JobEvent, TaskMemory, UserState, Worker, SchemaVersion, MaintenanceState,
              ApiToken) + CHANNEL_MODELS + NOTIFY_MODELS
