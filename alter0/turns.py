"""Whose turn it is: a job routes only after every earlier job of its scope has routed, and generates only
after every earlier job of its task has generated. The one home of that ordering rule."""

from __future__ import annotations

from peewee import fn

from .models import Job, JobStatus as S
from .prepared import Prepared

ROUTING_NOW = [S.QUEUED.value, S.ROUTING.value]
#: The first job before / after a given one in the same scope that has not routed yet.
_ROUTE_BEFORE = Prepared(lambda scope, job_id: Job.select(Job.id).where(
    (Job.scope == scope) & Job.status.in_(ROUTING_NOW) & (Job.id < job_id)).order_by(Job.id).limit(1))
_ROUTE_AFTER = Prepared(lambda scope, job_id: Job.select(Job.id, Job.parked).where(
    (Job.scope == scope) & Job.status.in_(ROUTING_NOW) & (Job.id > job_id)).order_by(Job.id).limit(1))
#: The first job before / after a given one of the same task that has not generated yet.
_GENERATE_BEFORE = Prepared(lambda task_id, job_id: Job.select(Job.id).where(
    (Job.task == task_id) & (Job.status == S.GENERATING.value) & (Job.id < job_id)).order_by(Job.id).limit(1))
_GENERATE_AFTER = Prepared(lambda task_id, job_id: Job.select(Job.id, Job.parked).where(
    (Job.task == task_id) & (Job.status == S.GENERATING.value) & (Job.id > job_id)).order_by(Job.id).limit(1))


def earlier_blocker(job: Job, stage: str) -> Job | None:
    """An earlier job that must finish this stage first (same scope for route, same task for generate)."""
    if stage == "route":
        return _ROUTE_BEFORE.first(job.scope, job.id)
    if stage == "generate":
        return _GENERATE_BEFORE.first(job.task_id, job.id)
    return None


def next_in_line(job: Job, stage: str) -> Job | None:
    """The first later job waiting for this stage behind ``job`` (its ``parked`` says whether to wake it)."""
    if stage == "route":
        return _ROUTE_AFTER.first(job.scope, job.id)
    if stage == "generate" and job.task_id is not None:
        return _GENERATE_AFTER.first(job.task_id, job.id)
    return None


def runnable_parked():
    """Condition: parked jobs whose turn has come (no earlier job of the scope routing, or of the task generating)."""
    Earlier = Job.alias()
    route_blocked = Earlier.select(Earlier.id).where(
        (Earlier.scope == Job.scope) & Earlier.status.in_(ROUTING_NOW) & (Earlier.id < Job.id))
    gen_blocked = Earlier.select(Earlier.id).where(
        (Earlier.task == Job.task) & (Earlier.status == S.GENERATING.value) & (Earlier.id < Job.id))
    return Job.parked & (
        (Job.status.in_(ROUTING_NOW) & ~fn.EXISTS(route_blocked)) |
        ((Job.status == S.GENERATING.value) & ~fn.EXISTS(gen_blocked)) |
        (Job.status == S.CLOSING.value))

