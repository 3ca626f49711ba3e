"""The stage turn: one stage thread of a worker runs Python at a time, except while it waits."""

from __future__ import annotations

import threading
import time

from alter0.inflight import StageTurn


def test_one_thread_has_the_turn_at_a_time_and_a_wait_gives_it_up():
    turn, order = StageTurn(), []

    def other():
        with turn.held():
            order.append("other")

    with turn.held():
        with turn.held():  # again in the same thread: no wait
            assert turn.holding()
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.2)
        assert order == []  # the other thread waits for the turn
        with turn.released():  # this thread waits for something: the other one runs meanwhile
            thread.join(5)
            assert order == ["other"] and not turn.holding()
        assert turn.holding()
        order.append("first")
    assert order == ["other", "first"] and not turn.holding()


def test_giving_up_a_turn_one_does_not_have_changes_nothing():
    turn = StageTurn()
    with turn.released():
        assert not turn.holding()
    with turn.held():
        pass
    assert not turn.holding()


def test_a_wait_that_fails_still_takes_the_turn_back():
    turn = StageTurn()
    with turn.held():
        try:
            with turn.released():
                raise TimeoutError("the agent timed out")
        except TimeoutError:
            pass
        assert turn.holding()
    assert not turn.holding()
