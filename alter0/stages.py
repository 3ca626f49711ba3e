"""The three stages as plain functions of a job id; queue engines call ``run_stage``.

Ordering: a job routes only after every earlier job of its scope has routed, and generates only after
every earlier job of its task has generated. A job that must wait is *parked* (no queue message held);
the job ahead of it hands the turn on when it finishes, and the reclaim sweep is the safety net.
"""

from __future__ import annotations

import logging
import time

from peewee import InterfaceError, OperationalError

from . import faults, jobstate, memory, taskstate, threads, turns, workspaces
from .decide import choose_task, decide_close, task_by_id
from .errors import ExecutorError
from .executors.base import ExecRequest
from .inflight import STAGE_TURN
from .jsonlog import stage_log
from .models import STATES_OF_STAGE, Job, JobStatus as S, Message, TERMINAL, stage_of
from .prepared import Prepared, create
from .bounded import stored_reply
from .clock import db_now
from .database import write_tx
from .retry import run_with_retry
from .runtime import Runtime

log = logging.getLogger(__name__)
ERROR_END = {"timeout": S.TIMED_OUT, "cancelled": S.CANCELLED}
MAX_PROGRESS_EVENTS = 500


class Abandon(Exception):
    """The worker is stopping: leave the job where it is for the next start to reclaim."""


class LeaseLost(Exception):
    """Raised inside a stage's final transaction when the job moved on without us: roll everything back."""


def _move_on(job: Job, src: S, dst: S, lease: str, **fields) -> None:
    """A stage's final move, inside its transaction: LeaseLost (rolling the transaction back) if the job is no
    longer ``src`` under our lease."""
    if not jobstate.transition(job.id, src, dst, owner=lease, **fields):
        raise LeaseLost()


def _ctx(job: Job, stage: str, **override) -> dict:
    return {"job_id": job.id, "task_id": job.task_id, "stage": stage, "user_id": job.user_id,
            "channel_id": job.channel_id, **override}


_MESSAGE_BY_ID = Prepared(lambda message_id: Message.select().where(Message.id == message_id))


def run_stage(rt: Runtime, stage: str, job_id: int) -> None:
    """Run one stage of one job if it is its turn; otherwise park it. Never raises for job-level failures.

    After a generation, a slot of this process may be free: the generations waiting for one get it,
    oldest first (``_give_slots``)."""
    _run_one(rt, stage, job_id)
    if stage == "generate":
        _give_slots(rt)


def _give_slots(rt: Runtime) -> None:
    """Hand each free generation slot to the oldest generation of this process waiting for one. The
    thread runs it itself where the engine allows (no Huey round trip, no query); otherwise (Dramatiq runs a
    generation under its task's lock) the job is sent on, ahead of new work."""
    while (job_id := rt.work.take_slot_waiter()) is not None:
        if rt.queue.runs_hand_offs:
            _run_one(rt, "generate", job_id, holding_slot=True)
        else:
            rt.work.generation_slots.release()
            rt.queue.enqueue("generate", job_id, urgent=True)
            return


def _run_one(rt: Runtime, stage: str, job_id: int, holding_slot: bool = False) -> None:
    """``run_stage`` for one job, in the process's stage turn; ``holding_slot``: the caller took a generation slot
    for it (given back here)."""
    with STAGE_TURN.held():
        _run_turn(rt, stage, job_id, holding_slot)


def _run_turn(rt: Runtime, stage: str, job_id: int, holding_slot: bool) -> None:
    slot = rt.work.generation_slots if stage == "generate" else None
    held, ran = holding_slot, False
    try:
        if slot is not None and not held and not rt.work.draining.is_set():
            # every slot busy: the next generation of this process to finish runs it, and reads the job then;
            # nothing is written now (this process's dispatch sweep leaves its slot waiters be)
            held = slot.acquire(blocking=False)
            if not held:
                rt.work.wait_for_slot(job_id)
                return
        job = jobstate.job_by_id(job_id)
        if job is None or job.state not in STATES_OF_STAGE[stage]:
            return
        if rt.work.draining.is_set():  # the message left the queue: mark it for the next start's reclaim
            jobstate.mark_undispatched(job.id)
            return
        if job.cancel_requested:
            _finish_error(job, job.state, ExecutorError("cancelled", "cancelled by request"), owner=None)
            return
        if turns.earlier_blocker(job, stage) is not None:
            _park(job.id)
            if turns.earlier_blocker(job, stage) is not None:  # re-check: the job ahead may have finished meanwhile
                return
        ran = _lease_and_run(rt, stage, job)
    finally:
        if held:
            slot.release()
    if ran:
        hand_on(rt, stage, job)


def _park(job_id: int) -> None:
    """Park a job whose message is used up. Not flushed by itself: a park lost in a power cut leaves a job
    whose message is gone and which is not parked, and the dispatch sweep sends it again."""
    with write_tx(durable=False):
        jobstate.park(job_id)


def _lease_and_run(rt: Runtime, stage: str, job: Job) -> bool:
    """Take the stage's lease, run the stage, and give the lease back unless the stage moved the job on. False
    if the job was not ours to run or a database error interrupted it (no hand-on then)."""
    lease = rt.work.lease_token()
    task = task_by_id(job.task_id) if stage == "generate" else None  # read once: the start event and the run
    if not _start(rt, stage, job, lease, task):
        return False
    moved_on = False
    try:
        with rt.work.running(job.id) as cancel:
            stall = faults.stall_of(stage)
            if stall:  # a test's stall (a cancel ends it): other stages go on meanwhile
                with STAGE_TURN.released():
                    cancel.wait(stall)
            # True: the stage moved the job on (and so gave the lease back with that move)
            moved_on = bool(route(rt, job, cancel, lease) if stage == "route" else
                            generate(rt, job, task, cancel, lease) if stage == "generate" else
                            close(rt, job, cancel, lease))
    except Abandon:
        jobstate.mark_undispatched(job.id)  # reclaimed at the next start
        log.info("job %s left in %s for reclaim (worker stopping)", job.id, stage, extra=_ctx(job, stage))
    except (OperationalError, InterfaceError) as exc:  # the database went away: leave the job for reclaim
        log.warning("stage %s of job %s interrupted by a database error (%s); its lease will expire and "
                    "the job is re-run", stage, job.id, exc, extra=_ctx(job, stage))
        return False
    except Exception as exc:
        log.exception("stage %s of job %s crashed", stage, job.id, extra=_ctx(job, stage))
        fresh = Job.get_by_id(job.id)
        if fresh.state not in TERMINAL:
            _finish_error(fresh, fresh.state, ExecutorError("internal", f"internal error in {stage}: {exc}"),
                          owner=lease)
    finally:
        try:  # a stage that moved the job on gave its lease back with that move
            if not moved_on and jobstate.held_by(job.id, lease):
                jobstate.release(job.id, lease)
        except (OperationalError, InterfaceError):
            pass  # the lease expires by itself
    return True


def _start(rt: Runtime, stage: str, job: Job, lease: str, task=None) -> bool:
    """Take the stage's lease, count the (first) attempt and record the start: one UPDATE and one INSERT in one
    commit, which is not flushed to disk by itself (``write_tx(durable=False)``: the stage's end flushes it).
    False if another worker holds the lease or the job moved on."""
    data = _generate_started(rt, task) if stage == "generate" else None
    with write_tx(durable=False):  # a lease dies with its worker: nothing to keep through a power cut
        return jobstate.claim(job.id, job.state, lease, rt.cfg["runtime.queue.lease_sec"],
                              to=S.ROUTING if job.state == S.QUEUED else None, count=stage,
                              events=[("stage.started", stage, data)])


def _generate_started(rt: Runtime, task) -> dict:
    """What the timeline says when a generation starts: the executor and whether it resumes its session."""
    name = (task.executor if task else None) or rt.executor_name()
    try:
        keeps = rt.executor(name).keeps_session
    except Exception:  # an unknown executor fails in the stage itself, with its message
        keeps = False
    return {"executor": name, "resume": bool(keeps and task and task.session_id)}


def hand_on(rt: Runtime, stage: str, job: Job) -> None:
    """Give the turn to the next parked job behind this one (same scope for route, same task for generate)."""
    nxt = turns.next_in_line(job, stage)  # for generate, task_id was set by route, before this stage was read
    if nxt is not None and nxt.parked:
        faults.kill_point(f"hand_on_{stage}")  # a worker dying here leaves the next job parked: the sweep sends it
        rt.queue.enqueue(stage, nxt.id, urgent=True)


# --- route ------------------------------------------------------------------------------------------

def route(rt: Runtime, job: Job, cancel, lease: str) -> bool:
    """Pick the job's task (moved > forced > explicit > thread-bound > router > new), store the user message,
    queue generation."""
    started = time.monotonic()
    choice = choose_task(rt, job)
    d = choice.decision
    try:
        with write_tx():  # the job moves on only if it is still ours; otherwise nothing here is kept
            if choice.task is None:
                task = taskstate.create(job.scope, job.user_id, job.channel_id, job.content, rt.executor_name())
            else:
                task = choice.task
                if choice.reopen:
                    taskstate.reopen(task.id)
                else:
                    taskstate.touch(task.id)
            msg = _MESSAGE_BY_ID.first(job.user_message_id) if job.user_message_id else create(
                Message, task=task.id, role="user", content=job.content, user_id=job.user_id, channel_id=job.channel_id)
            memory.append_turn(rt.cfg, task.id, msg, new_task=choice.task is None)
            threads.bind(job.channel_id, job.thread_key, task.id)  # the thread's first task keeps it
            _move_on(job, S.ROUTING, S.GENERATING, lease, task=task.id, user_message=msg.id,
                     decision="new" if choice.task is None else "existing", decision_source=choice.source,
                     route_confidence=d.confidence, route_reason=d.reason, route_version=d.version,
                     dispatched_at=db_now(),  # the generate message is sent right after the commit
                     events=[("stage.finished", "route", {
                         "task_id": task.id, "decision": "new" if choice.task is None else "existing",
                         "source": choice.source, "confidence": d.confidence, "reason": d.reason})])
    except LeaseLost:
        return False
    stage_log(rt.output_dir, "route", **_ctx(job, "route", task_id=task.id), session_id=task.session_id,
              decision="new" if choice.task is None else "existing", source=choice.source,
              confidence=d.confidence, reason=d.reason, version=d.version,
              duration_ms=round((time.monotonic() - started) * 1000, 2), error=None)
    rt.queue.enqueue("generate", job.id, stamped=True)
    return True


# --- generate ---------------------------------------------------------------------------------------

def generate(rt: Runtime, job: Job, task, cancel, lease: str) -> bool:
    """Run the task's executor (resuming its session), store exactly one reply, queue closing (``task``: the
    job's task row, read by ``run_stage``)."""
    started = time.monotonic()
    executor = rt.executor(task.executor or rt.executor_name())
    resume = bool(executor.keeps_session and task.session_id)
    prompt, prompt_use = memory.build_prompt(rt.cfg, task, _MESSAGE_BY_ID.first(job.user_message_id), resume)
    timeout = min(rt.cfg["task.generation_timeout_sec"], rt.cfg["runtime.queue.attempt_timeout_sec"])
    counter = {"n": 0, "attempts": 0}

    def on_event(kind: str, data: dict) -> None:
        counter["n"] += 1
        if counter["n"] <= MAX_PROGRESS_EVENTS:
            jobstate.add_event(job.id, kind, "generate", data)

    def attempt():
        counter["attempts"] += 1
        if counter["attempts"] > 1:  # the stage's start counted the first
            jobstate.count_attempt(job.id, "generate")
        mark = executor.checkpoint(task.session_id) if resume else None
        try:
            return executor.run(ExecRequest(prompt=prompt, session_id=task.session_id if resume else None,
                                            workdir=turn.path, timeout=timeout, cancel=cancel, on_event=on_event,
                                            on_process=on_process))
        except BaseException:  # failed, timed out or cancelled: the agent's session forgets this attempt
            executor.rollback(mark)
            raise

    def on_process(pgid: int) -> None:
        jobstate.set_executor_pgid(job.id, pgid)

    try:
        with STAGE_TURN.released():  # the agent's run (and git's, in a worktree): other stages go on meanwhile
            turn = workspaces.workdir_for(rt.cfg, task)  # executor.workdir_root/task-<id>, or the task's worktree
            result = run_with_retry(rt, "generate", job, attempt, cancel)
            receipt = workspaces.after_turn(rt.cfg, turn, result.text, timeout, cancel)
    except ExecutorError as exc:
        _stage_failed(rt, job, S.GENERATING, exc, "generate", started, lease, session_id=task.session_id)
        return False
    reported = result.usage or {}
    session_id = result.session_id or task.session_id
    if executor.cumulative_usage:  # running totals of the session: this turn used their growth
        usage = taskstate.turn_usage(reported, task.session_usage if resume and session_id == task.session_id
                                     else None)
    else:
        usage = dict(reported)
    tokens_in, tokens_out = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    cost = taskstate.turn_cost(rt.cfg, executor.name, usage)
    if cost:
        usage["cost_usd"] = cost
    reply = stored_reply(rt.output_dir, job.id, result.text, rt.cfg["task.max_reply_chars"])
    try:
        with write_tx():  # exactly one reply: only the lease holder of a job still generating stores it
            text = reply if receipt is None else f"{reply}\n\n{workspaces.receipt_summary(receipt)}"
            msg = create(Message, task=task.id, role="assistant", content=text,
                                 user_id=rt.cfg["agent.name"], channel_id=job.channel_id)
            if receipt is not None:
                workspaces.record_receipt(job.id, task.id, receipt)
            taskstate.record_turn(task.id, session_id, tokens_in, tokens_out, cost,
                                  session_usage=reported if executor.cumulative_usage else None)
            memory.append_turn(rt.cfg, task.id, msg)
            _move_on(job, S.GENERATING, S.CLOSING, lease, reply_message=msg.id, executor_pgid=None,
                     input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost,
                     dispatched_at=db_now(),  # the close message is sent right after the commit
                     events=[("stage.finished", "generate", {"chars": len(result.text), "stored_chars": len(reply),
                                                               "usage": usage, "prompt": prompt_use})])
    except LeaseLost:
        log.warning("job %s: generation result dropped (lease lost or reply already stored)", job.id,
                    extra=_ctx(job, "generate"))
        return False
    stage_log(rt.output_dir, "generate", **_ctx(job, "generate"), session_id=result.session_id or task.session_id,
              executor=executor.name, resume=resume, usage=usage,
              duration_ms=round((time.monotonic() - started) * 1000, 2), error=None)
    rt.queue.enqueue("close", job.id, stamped=True)
    return True


# --- close ------------------------------------------------------------------------------------------

def close(rt: Runtime, job: Job, cancel, lease: str) -> bool:
    """Ask the closer whether the task is finished; close it above the threshold; the job is done."""
    started = time.monotonic()
    d, should_close = decide_close(rt, job)
    in_worktree = rt.cfg["workspace.mode"] == "worktree"
    if (should_close or in_worktree) and not workspaces.allows_close(job.id):  # a failed check never auto-closes
        should_close, d.reason = False, f"kept open by the receipt (failed check or unproven commit); {d.reason}"
    try:
        with write_tx():
            if should_close:
                taskstate.close(job.task_id, "auto", d.reason, d.confidence)
            _move_on(job, S.CLOSING, S.DONE, lease, close_decision=should_close, close_confidence=d.confidence,
                     close_reason=d.reason, close_version=d.version,
                     events=[("stage.finished", "close", {
                         "close": should_close, "confidence": d.confidence, "reason": d.reason})])
    except LeaseLost:
        return False
    if should_close:
        with STAGE_TURN.released():  # a worktree's removal runs git
            workspaces.on_task_closed(rt.cfg, job.task_id)  # workspace.cleanup = on_close
    stage_log(rt.output_dir, "close", **_ctx(job, "close"), close=should_close, confidence=d.confidence,
              reason=d.reason, version=d.version, duration_ms=round((time.monotonic() - started) * 1000, 2),
              error=None)
    return True


# --- failures ---------------------------------------------------------------------------------------

def _stage_failed(rt: Runtime, job: Job, src: S, exc: ExecutorError, stage: str, started: float, lease: str,
                  session_id: str | None = None) -> None:
    if exc.kind == "cancelled" and rt.work.draining.is_set() and not Job.get_by_id(job.id).cancel_requested:
        raise Abandon()
    _finish_error(job, src, exc, owner=lease)
    stage_log(rt.output_dir, stage, **_ctx(job, stage), session_id=session_id,
              duration_ms=round((time.monotonic() - started) * 1000, 2), error={"kind": exc.kind, "message": exc.message})


def _finish_error(job: Job, src: S, exc: ExecutorError, owner: str | None) -> None:
    """End a job as cancelled, timed out or failed, recording the error kind and text; the state change and its
    "error" event commit together, so a reader that sees the job ended also sees why."""
    dst = ERROR_END.get(exc.kind, S.FAILED)
    with write_tx():
        moved = jobstate.transition(job.id, src, dst, owner=owner, error_kind=exc.kind, error=exc.message,
                                    events=[("error", stage_of(src), {"kind": exc.kind, "message": exc.message})])
    if moved:
        log.warning("job %s %s: %s (%s)", job.id, dst.value, exc.message, exc.kind, extra=_ctx(job, stage_of(src)))

