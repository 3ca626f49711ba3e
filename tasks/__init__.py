"""Queue bindings. ``huey_consumer tasks.huey`` finds the Huey instance and the stage tasks here."""

import importlib.util

from .huey_app import huey  # noqa: F401
from . import huey_tasks  # noqa: F401  (registers the stage tasks)

if importlib.util.find_spec("tasks.maintenance") is not None:
    from . import maintenance  # noqa: F401  (periodic maintenance jobs)
