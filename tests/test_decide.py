"""Router and closer answers are validated; anything outside the contract degrades, never crashes."""

import sys
import time

import pytest

from alter0 import service, views
from alter0.routing.base import CloseDecision, Closer, RouteDecision, Router


class FixedRouter(Router):
    version = "fixed-1"

    def __init__(self, answer):
        self.answer = answer

    def route(self, inp):
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer == "sleep":
            time.sleep(3)
            return {"decision": "existing", "task_id": inp.candidates[0].task_id, "confidence": 1, "reason": "late"}
        return self.answer(inp) if callable(self.answer) else self.answer


class FixedCloser(Closer):
    def __init__(self, answer):
        self.answer = answer

    def decide(self, inp):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def rt(stub_runtime):
    """An inline stub-engine runtime whose executor echoes the prompt; the router may take 1 s."""
    return stub_runtime(executor__command=[sys.executable, "-c", "import sys; print('ok: ' + sys.stdin.read())"],
                        task__routing_timeout_sec=1.0)


def run(rt, text, user="u1", **kw):
    job, _ = service.submit(rt, text, user, **kw)
    rt.queue.join()
    return views.get_job(job.id)


def with_router(rt, answer, closer=CloseDecision(False, 0.9, "keep")):
    rt._backends.update(router=FixedRouter(answer), closer=FixedCloser(closer))


def test_router_choice_above_threshold_joins_the_task(rt):
    with_router(rt, lambda inp: RouteDecision("existing", inp.candidates[0].task_id, 0.9, "same topic", "fixed-1"))
    first = run(rt, "first")
    second = run(rt, "second")
    assert second.task_id == first.task_id and second.decision == "existing"
    assert second.route_reason == "same topic" and second.route_version == "fixed-1"


def test_below_threshold_starts_a_new_task(rt):
    with_router(rt, lambda inp: RouteDecision("existing", inp.candidates[0].task_id, 0.2, "weak"))
    first = run(rt, "first")
    second = run(rt, "second")
    assert second.task_id != first.task_id and second.decision == "new"
    assert second.route_reason.startswith("below threshold")


def test_ask_band_starts_a_new_task_and_names_the_candidates(stub_runtime):
    # Given the ask band on at 0.6 and a router that is 55% sure of the first task
    rt = stub_runtime(executor__command=[sys.executable, "-c", "import sys; print('ok')"], router__ask_below=0.6)
    with_router(rt, lambda inp: RouteDecision("existing", inp.candidates[0].task_id, 0.55, "weak",
                                              scores={inp.candidates[0].task_id: 0.55}))
    first = run(rt, "fix the login bug")
    second = run(rt, "and the session thing")
    # Then the message does not join a task it is unsure of: a new task, and the route reason asks which one
    assert second.task_id != first.task_id and second.decision == "new"
    view = views.job_view(second)
    assert view["route"]["reason"].startswith("ask: not sure which task")
    assert f"task {first.task_id} 'fix the login bug' p=0.55" in view["route"]["reason"]
    assert "/task use ID" in view["route"]["reason"]
    # And above the band the router's answer stands
    with_router(rt, lambda inp: RouteDecision("existing", inp.candidates[0].task_id, 0.9, "sure"))
    assert run(rt, "third").decision == "existing"


def test_ask_band_is_off_by_default(rt):
    assert rt.cfg["router.ask_below"] == 0
    with_router(rt, lambda inp: RouteDecision("existing", inp.candidates[0].task_id, 0.55, "weak"))
    run(rt, "first")
    assert run(rt, "second").decision == "existing"


@pytest.mark.parametrize("answer, why", [
    ({"decision": "existing", "task_id": 999, "confidence": 0.9, "reason": "x"}, "not one of the open candidate"),
    ({"decision": "maybe", "task_id": 1, "confidence": 0.9, "reason": "x"}, "decision must be"),
    ({"decision": "existing", "task_id": 1, "confidence": 7, "reason": "x"}, "confidence must be"),
    ("garbage", "must be an object"),
    (RuntimeError("model exploded"), "router failed: RuntimeError: model exploded"),
    ("sleep", "router timed out"),
])
def test_invalid_router_output_degrades_to_new_task(rt, answer, why):
    with_router(rt, answer)
    first = run(rt, "first")
    second = run(rt, "second")
    assert second.status == "done" and second.task_id != first.task_id and second.decision == "new"
    assert "degraded" in second.route_reason and why in second.route_reason


def test_a_local_router_decides_in_the_stage_thread_and_a_late_answer_is_discarded(rt):
    # Given an in-process router (like the embedded one) that notes its thread, then one slower than the limit (1 s)
    import threading
    seen = []

    class Local(FixedRouter):
        local = True

        def route(self, inp):
            seen.append(threading.current_thread().name)
            if self.answer == "slow":
                time.sleep(1.3)
                return RouteDecision("existing", inp.candidates[0].task_id, 1.0, "late")
            return RouteDecision("existing", inp.candidates[0].task_id, 1.0, "same")
    rt._backends.update(router=Local("quick"), closer=FixedCloser(CloseDecision(False, 0.9, "keep")))
    first = run(rt, "first")
    second = run(rt, "second")
    # Then it ran in the stage's own thread (no hand-off to the decision pool) and its answer counted
    assert seen and not any(name.startswith("alter0-decide") for name in seen)
    assert second.task_id == first.task_id and second.decision_source == "router"
    # And when it answers after the limit, the answer is discarded as a timeout: a new task, the reason says so
    rt._backends.update(router=Local("slow"))
    third = run(rt, "third")
    assert third.task_id != first.task_id and "degraded: router timed out after 1.0s" in third.route_reason


def test_closer_above_threshold_closes_and_invalid_output_keeps_open(rt):
    with_router(rt, lambda inp: RouteDecision("new", None, 1.0, "n"), CloseDecision(True, 0.95, "user said thanks"))
    job = run(rt, "thanks, works")
    assert job.close_decision is True and views.get_task(job.task_id).status == "closed"
    assert views.get_task(job.task_id).closed_by == "auto"
    with_router(rt, lambda inp: RouteDecision("new", None, 1.0, "n"), {"close": "yes", "confidence": 1, "reason": ""})
    job = run(rt, "another")
    assert job.status == "done" and job.close_decision is False and "degraded" in job.close_reason
    with_router(rt, lambda inp: RouteDecision("new", None, 1.0, "n"), CloseDecision(True, 0.5, "unsure"))
    job = run(rt, "third")
    assert job.close_decision is False and views.get_task(job.task_id).status == "open"


def test_idempotent_submit_returns_the_first_job(rt):
    with_router(rt, lambda inp: RouteDecision("new", None, 1.0, "n"))
    a, created_a = service.submit(rt, "hello", "u1", request_id="k1")
    b, created_b = service.submit(rt, "hello", "u1", request_id="k1")
    assert a.id == b.id and created_a and not created_b
    from alter0.errors import Conflict
    with pytest.raises(Conflict):
        service.submit(rt, "different", "u1", request_id="k1")


def test_illegal_transitions_are_rejected(rt):
    from alter0 import jobstate
    from alter0.errors import IllegalTransition
    from alter0.models import JobStatus as S
    with_router(rt, lambda inp: RouteDecision("new", None, 1.0, "n"))
    job = run(rt, "done job")
    with pytest.raises(IllegalTransition):
        jobstate.transition(job.id, S.DONE, S.GENERATING)
    with pytest.raises(IllegalTransition):
        jobstate.transition(job.id, S.QUEUED, S.CLOSING)
    assert not jobstate.transition(job.id, S.CLOSING, S.DONE)  # not in closing any more: no change


def test_next_stage_registered_before_this_one_returns_stays_in_flight(rt):
    # route sends the generate message before it returns, so generate may register the same job first
    route = rt.work.running(8)
    route.__enter__()
    generate = rt.work.running(8)
    generate_cancel = generate.__enter__()
    route.__exit__(None, None, None)
    # then route leaving must not drop generate's registration (its cancel delivery and lease renewal need it)
    assert rt.work.jobs[8] is generate_cancel
    generate.__exit__(None, None, None)
    assert 8 not in rt.work.jobs


def test_a_plain_message_costs_no_embedding_and_a_follow_up_embeds_each_text_once(rt):
    # Given the default embedded router and closer (one embedder), watched for the texts they run the model on
    embedder = rt.router.embedder
    assert rt.closer.embedder is embedder  # built now: its prototypes are embedded once, when it is made
    embedded = []
    real = embedder.embed

    def spy(text):
        if text not in embedder._cache:
            embedded.append(text)
        return real(text)
    embedder.embed = spy
    try:
        # When a message is routed (no open task), answered and closed
        first = run(rt, "write the release notes for 2.4 (embedding count)")
        after_first = list(embedded)
        # and a follow-up from the same user is routed with that task as a candidate
        second = run(rt, "also mention the new retry flag (embedding count)")
    finally:
        del embedder.embed
    # Then the first message cost no model run: the closer's rules leave nothing the model could turn into a close
    # (a plain exchange at the default threshold), and nothing embedded the reply or the title ahead of a decision
    # that may never come
    assert after_first == [], after_first
    # and the follow-up's decision embedded each text it reads once: the stored reply, the first message
    reply = views.get_job(first.id).reply_message.content
    assert embedded.count(reply) == 1 and embedded.count("write the release notes for 2.4 (embedding count)") == 1
    assert len(embedded) == len(set(embedded)), embedded
    assert second.status == "done"


def test_unrelated_requests_one_after_another_each_start_a_task(stub_runtime):
    # Given the real embedded router and closer, and an agent that answers every request
    rt = stub_runtime(executor__command=[sys.executable, "-c",
                                         "import sys; print('Here it is: ' + sys.stdin.read()[-60:])"])
    texts = ["write a haiku about autumn", "用 Python 写一个斐波那契函数", "write a limerick about databases",
             "what is the boiling point of water?"]
    # When a new user sends the four unrelated requests one after another, then acknowledges
    jobs = [run(rt, t, user="newbie") for t in texts]
    ack = run(rt, "thanks!", user="newbie")
    # Then each request starts a task of its own, and the acknowledgement stays in the last one
    assert [j.decision for j in jobs] == ["new"] * 4, [j.route_reason for j in jobs]
    assert len({j.task_id for j in jobs}) == 4
    assert ack.decision == "existing" and ack.task_id == jobs[-1].task_id, ack.route_reason
    assert "acknowledgement" in ack.route_reason


class RecordingCloser(Closer):
    """Keeps every input it is given; reads the task's recent messages only if told to."""

    def __init__(self, reads_turns: bool):
        self.reads_turns, self.seen = reads_turns, []

    def decide(self, inp):
        self.seen.append(inp)
        return CloseDecision(False, 0.9, "keep")


@pytest.mark.parametrize("reads_turns", [True, False])
def test_a_closer_gets_the_reply_always_and_the_recent_messages_only_if_it_reads_them(rt, reads_turns):
    closer = RecordingCloser(reads_turns)
    rt._backends.update(router=FixedRouter(lambda inp: RouteDecision("existing", inp.candidates[0].task_id, 0.9,
                                                                     "same", "fixed-1")), closer=closer)
    jobs = [run(rt, f"step {i} of the same task") for i in range(6)]
    assert len({j.task_id for j in jobs}) == 1
    inp = closer.seen[-1]
    assert inp.reply == views.get_job(jobs[-1].id).reply_message.content and inp.reply.startswith("ok: ")
    assert inp.user_message == "step 5 of the same task"
    if reads_turns:  # the last 10 messages, oldest first: steps 1-5 with their replies
        assert len(inp.turns) == 10 and inp.turns[-1].content == inp.reply and inp.turns[0].content.startswith("step 1")
    else:
        assert inp.turns == []
