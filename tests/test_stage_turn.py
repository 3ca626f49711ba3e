"""The stage turn: one stage thread of a worker runs Python at a time, except while it waits."""

from __future__ import annotations

import threading
import time

import pytest
from peewee import OperationalError

from alter0.config import load_config
from alter0.database import write_tx
from alter0.inflight import STAGE_TURN, StageTurn
from alter0.migrations import open_current
from alter0.models import Job, db
from support.helpers import write_config


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


def test_stage_threads_share_one_connection_and_never_inside_a_transaction(tmp_path):
    # Given alter0's database, opened as a worker opens it
    database = open_current(load_config(write_config(tmp_path), env={}))
    try:
        seen = {}

        def stage(name):
            with STAGE_TURN.held():
                seen[name] = db.connection()
                with STAGE_TURN.released():  # an agent's run: the thread's own connection meanwhile
                    seen[name + " waiting"] = db.connection()
                assert db.connection() is seen[name]

        threads = [threading.Thread(target=stage, args=(n,)) for n in ("a", "b")]
        [t.start() for t in threads]
        [t.join(10) for t in threads]
        # then both stages ran on the turn's one connection, and each waited on a connection of its own
        assert seen["a"] is seen["b"]
        assert len({id(seen["a"]), id(seen["a waiting"]), id(seen["b waiting"])}) == 3
        # and a thread giving its turn up inside a transaction is refused (the next would write inside it)
        with STAGE_TURN.held():
            with pytest.raises(OperationalError, match="inside a transaction"):
                with write_tx():
                    with STAGE_TURN.released():
                        pass
            assert db.connection() is seen["a"] and not database.in_transaction()
    finally:
        database.close()


def test_closing_the_database_inside_a_turn_leaves_the_thread_a_working_connection(tmp_path):
    database = open_current(load_config(write_config(tmp_path), env={}))
    try:
        assert Job.select().count() == 0  # the thread's own connection is open
        with STAGE_TURN.held():
            database.close()  # the thread's own connection closes; the turn's stays for the next stage
        assert Job.select().count() == 0  # the thread opens a new one of its own (not the closed one)
    finally:
        database.close()
