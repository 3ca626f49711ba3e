"""Queue bindings, one folder per engine (huey_engine/, dramatiq_engine/); importing this package imports neither.

``huey_consumer tasks.huey`` reads the ``huey`` attribute below: the Huey instance of the environment's config
(``ALTER0_CONFIG`` or ``config/config.json``), built on first access with the stage tasks registered.
"""


def __getattr__(name: str):
    if name == "huey":
        from alter0.config import load_config
        from .huey_engine.app import binding_for
        return binding_for(load_config()).huey
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")
