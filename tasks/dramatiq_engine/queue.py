"""alter0's Queue on Dramatiq: send a stage actor's message to Redis."""

from alter0.queue import Queue


class DramatiqQueue(Queue):
    name = "dramatiq"

    def __init__(self, binding):
        self.binding = binding

    def _send(self, stage, job_id, delay):
        options = {"delay": int(delay * 1000)} if delay else {}
        self.binding.actors[stage].send_with_options(args=(job_id,), **options)

    def backlog(self):
        return self.binding.backlog()

    def pending(self):
        return self.binding.pending()


def make_queue(cfg):
    from .app import binding_for
    return DramatiqQueue(binding_for(cfg))
