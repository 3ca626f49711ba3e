"""alter0's Queue on Huey: enqueue a stage task by name, then ring the doorbells of the host's workers."""

from alter0.queue import Queue

from .doorbell import doorbell_for

#: Most messages ``pending`` lists (a bigger backlog answers None: "cannot tell").
PENDING_LIMIT = 20_000


class HueyQueue(Queue):
    name = "huey"

    def __init__(self, huey, tasks):
        self.huey, self.tasks = huey, tasks
        self.doorbell = doorbell_for(huey.storage.filename)

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
        """Waiting and scheduled messages (Huey removes a message before running it: none is unacknowledged)."""
        tasks = self.huey.pending(PENDING_LIMIT + 1) + self.huey.scheduled(PENDING_LIMIT + 1)
        if len(tasks) > PENDING_LIMIT:
            return None  # too many to list every second: the sweep falls back to its stale rule
        return {(t.name.rpartition(".")[2], t.args[0]) for t in tasks if t.args}


def make_queue(cfg):
    from .app import binding_for
    binding = binding_for(cfg)
    return HueyQueue(binding.huey, binding.tasks)
