"""alter0's Queue on Huey: enqueue a stage task by name, then ring the doorbells of the host's workers."""

from alter0.queue import Queue

from .doorbell import doorbell_for


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


def make_queue(cfg):
    from .app import binding_for
    binding = binding_for(cfg)
    return HueyQueue(binding.huey, binding.tasks)
