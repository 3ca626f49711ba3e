"""The notification feed's producers on a real SQLite file: a burst larger than one scan, a row committed behind
the cursor, workers going down and coming back; each fact once however often the producers run."""

from __future__ import annotations

import os
import time

from alter0.clock import db_now
from alter0.liveness import HOST
from alter0.models import Job, NotifyEvent, Task, Worker
from alter0.notify import feed


def finished_job(at: float, status: str = "done") -> Job:
    return Job.create(content="x", user_id="u", scope="user:u", status=status, created_at=at - 1, finished_at=at)


def kinds() -> list[str]:
    return [e.kind for e in NotifyEvent.select().order_by(NotifyEvent.id)]


def test_a_burst_larger_than_one_scan_and_a_late_commit_are_each_reported_once(rt):
    start = feed.start_time()
    for i in range(feed.BATCH + 100):
        finished_job(start + 1 + i * 0.001, "failed" if i % 7 == 0 else "done")
    while feed.produce(rt.cfg, lookback=False):
        pass
    assert len(kinds()) == feed.BATCH + 100
    late = finished_job(start + 0.5, "timed_out")  # committed after the cursor moved past its finish time
    assert feed.produce(rt.cfg, lookback=False) == 0
    assert feed.produce(rt.cfg, lookback=True) == 1 and kinds()[-1] == "job.timed_out"
    assert feed.produce(rt.cfg, lookback=True) == 0
    [event] = NotifyEvent.select().where(NotifyEvent.subject == f"job:{late.id}")
    assert event.payload["job"]["status"] == "timed_out"
    Job.update(status="done", finished_at=start + 30).where(Job.id == late.id).execute()  # retried, ended again
    assert feed.produce(rt.cfg) == 1 and kinds()[-1] == "job.done"


def test_history_before_the_feed_began_is_not_news(rt):
    old = finished_job(time.time() - 3600)
    Task.create(title="old", scope="user:u", user_id="u", status="closed", closed_at=time.time() - 3600)
    feed.start_time()
    task = Task.create(title="new", scope="user:u", user_id="u", status="closed", closed_at=db_now() + 1)
    feed.produce(rt.cfg)
    assert [(e.kind, e.subject) for e in NotifyEvent.select()] == [("task.closed", f"task:{task.id}")]
    assert not NotifyEvent.select().where(NotifyEvent.subject == f"job:{old.id}").exists()


def test_workers_down_once_and_up_when_replaced(rt):
    start = feed.start_time()
    Worker.create(id="w-before", host=HOST, pid=2 ** 22 + 11, started_at=start - 100, last_beat=start - 50)
    Worker.create(id="w1", host=HOST, pid=os.getpid(), started_at=start + 0.1, last_beat=db_now())
    feed.produce(rt.cfg)
    assert kinds() == []  # one alive, one gone before the feed began: nothing to say
    Worker.update(pid=2 ** 22 + 12).where(Worker.id == "w1").execute()  # its process is gone
    for _ in range(3):
        feed.produce(rt.cfg)
    assert kinds() == ["worker.down"]
    [down] = NotifyEvent.select()
    assert down.payload["reason"] == "dead" and down.payload["alive_workers"] == 0
    Worker.create(id="w2", host=HOST, pid=os.getpid(), started_at=db_now() + 1, last_beat=db_now())
    for _ in range(3):
        feed.produce(rt.cfg)
    assert kinds() == ["worker.down", "worker.up"]
    assert NotifyEvent.select().order_by(NotifyEvent.id.desc()).first().payload["replaces"] == "w1"


def test_retention_drops_old_events_every_reader_passed_and_old_sent_webhook_rows(rt):
    from alter0.channels import outbox
    from alter0.channels.base import Outgoing
    from alter0.models import ChannelDelivery, NotifyCursor
    from alter0.retention import DAY, purge_notifications
    old = time.time() - 30 * DAY
    for i in range(3):
        NotifyEvent.create(key=f"k{i}", kind="job.done", subject=f"job:{i}", payload={}, created_at=old)
    first, second, third = NotifyEvent.select().order_by(NotifyEvent.id)
    feed.set_position("webhook:abc", second.id)  # this reader has not read the third yet
    feed.set_position("webhook:gone", 0, active=False)  # a removed target holds nothing back
    outbox.enqueue("webhook:abc", [Outgoing("sent", "POST", {}), Outgoing("waiting", "POST", {})])
    ChannelDelivery.update(created_at=old).execute()
    ChannelDelivery.update(state="delivered").where(ChannelDelivery.key == "sent").execute()
    assert purge_notifications(time.time() - 14 * DAY) == {"notify_events": 2, "webhook_deliveries": 1}
    assert [e.id for e in NotifyEvent.select()] == [third.id]
    assert [d.key for d in ChannelDelivery.select()] == ["waiting"]  # pending: never dropped
    assert NotifyCursor.get(NotifyCursor.name == "webhook:abc").position == second.id
