"""alter0's Queue on Huey: enqueue a stage task by name, then ring the doorbells of the host's workers."""

from alter0.queue import Queue

from .doorbell import doorbell_for

#: Most messages ``pending`` lists (a bigger backlog answers None: "cannot tell").
PENDING_LIMIT = 20_000


class HueyQueue(Queue):
    name = "huey"
    runs_hand_offs = True  # a Huey worker thread holds no lock around a stage

    def __init__(self, huey, tasks):
        self.huey, self.tasks = huey, tasks
        self.doorbell = doorbell_for(huey.storage.filename)
        self._known: dict[int, tuple[bytes, tuple | None]] = {}  # queue row id -> (its bytes, its key)

    def _send(self, stage, job_id, delay):
        task = self.tasks[stage]
        if delay:
            task.schedule((job_id,), delay=delay)
        else:
            task(job_id)
            self.doorbell.ring()

    def _send_urgent(self, stage, job_id):
        """A hand-off runs ahead of new messages of its stage (one priority step up)."""
        task = self.tasks[stage]
        task(job_id, priority=(task.settings.get("default_priority") or 0) + 1)
        self.doorbell.ring()

    def backlog(self):
        return self.huey.pending_count()

    def pending(self):
        """Waiting and scheduled messages (Huey removes a message before running it: none is unacknowledged).

        The sweep asks every half second, and a backlog holds thousands of messages: each is unpickled once and
        remembered by its row (row id and bytes: SQLite may give a deleted row's id to a new message)."""
        rows = self.huey.storage.waiting_rows(PENDING_LIMIT + 1)
        scheduled = self.huey.scheduled(PENDING_LIMIT + 1)
        if len(rows) + len(scheduled) > PENDING_LIMIT:
            return None  # too many to list every second: the sweep falls back to its stale rule
        known, seen = self._known, {}
        for row_id, data in rows:
            hit = known.get(row_id)
            if hit is None or hit[0] != data:
                hit = (data, _key(self.huey.deserialize_task(data)))
            seen[row_id] = hit
        self._known = seen
        return ({key for _, key in seen.values()} | {_key(t) for t in scheduled}) - {None}


def _key(task) -> tuple | None:
    """(stage, job id) of a stage message."""
    return (task.name.rpartition(".")[2], task.args[0]) if task.args else None


def make_queue(cfg):
    from .app import binding_for
    binding = binding_for(cfg)
    return HueyQueue(binding.huey, binding.tasks)
