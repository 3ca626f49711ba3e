"""A process's context: config, database, queue, its in-flight runs, and lazily built router, closer and
executors (one Runtime per process, passed down; ``get_runtime`` is only for engine entry points)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .config import Config, load_config
from .inflight import STAGE_TURN, InFlight
from .migrations import open_current
from .paths import ensure_dirs
from .queue import Queue, load_queue

log = logging.getLogger(__name__)


class Runtime:
    """Everything a stage needs; one per process (``Runtime.open``)."""

    def __init__(self, cfg: Config, queue: Queue | None = None):
        self.cfg = cfg
        self.paths = ensure_dirs(cfg.output_dir)
        self.database = open_current(cfg)
        self._queue = queue
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.work = InFlight(self.owner, cfg["runtime.queue.workers"])
        self.lock = threading.Lock()  # guards the lazily opened queue and built executors
        self._backends_lock = threading.Lock()  # guards the lazily built router and closer
        self._backends: dict = {}
        self._executors: dict = {}

    @classmethod
    def open(cls, config_path: str | None = None, queue: Queue | None = None, **overrides) -> "Runtime":
        cfg = load_config(config_path, overrides={k.replace("__", "."): v for k, v in overrides.items()})
        return cls(cfg, queue)

    @property
    def output_dir(self) -> Path:
        return self.cfg.output_dir

    def open_queue(self) -> Queue:
        """Open the queue engine now (channels that submit do it at start, so a submit never meets a queue
        store that cannot be opened after its job was committed)."""
        with self.lock:
            if self._queue is None:
                self._queue = load_queue(self.cfg)
            return self._queue

    @property
    def queue(self) -> Queue:
        return self._queue if self._queue is not None else self.open_queue()

    @property
    def router(self):
        """The configured router (built once per process)."""
        from .routing.registry import build_router
        return self._built("router", build_router)

    @property
    def closer(self):
        """The configured closer (built once per process)."""
        from .routing.registry import build_closer
        return self._built("closer", build_closer)

    def _built(self, name: str, build):
        hit = self._backends.get(name)
        if hit is not None:
            return hit
        # its own lock: a stage that needs an executor never waits for a model load; nor, with the stage turn
        # given up meanwhile, does any other stage
        with STAGE_TURN.released(), self._backends_lock:
            if name not in self._backends:
                self._backends[name] = build(self.cfg, run_executor=self.run_executor_text)
            return self._backends[name]

    def warm_in_background(self) -> threading.Thread:
        """Build the router and closer and load their model in a daemon thread, so a starting worker takes its
        first message at once (a route or close stage that comes first waits for the same build)."""
        def build() -> None:
            from .routing.registry import warm
            started = time.monotonic()
            try:
                self.router, self.closer  # noqa: B018  built once per process
                reason = warm(self.cfg)  # the closer (and the llm backends' fallback) always embeds
            except Exception as exc:  # a model that fails to load may raise anything; the backends degrade
                reason = repr(exc)
            if reason:
                log.warning("router/closer model not loaded: %s", reason)
            else:
                log.info("router and closer ready %.2f s after the worker started consuming",
                         time.monotonic() - started)

        thread = threading.Thread(target=build, name="alter0-warm", daemon=True)
        thread.start()
        return thread

    def executor(self, name: str):
        """The executor adapter called ``name`` (built once per process)."""
        with self.lock:
            if name not in self._executors:
                from .executors.registry import build_executor
                self._executors[name] = build_executor(name, self.cfg)
            return self._executors[name]

    def executor_name(self) -> str:
        """The configured executor, with ``auto`` resolved to what is on PATH."""
        from .executors.registry import resolve_name
        return resolve_name(self.cfg)

    def run_executor_text(self, prompt: str, timeout: float) -> str:
        """Run the configured executor once, stateless (used by the llm router and closer)."""
        from .executors.base import ExecRequest
        ex = self.executor(self.executor_name())
        workdir = self.paths["work"] / "_router"
        workdir.mkdir(parents=True, exist_ok=True)
        return ex.run(ExecRequest(prompt=prompt, session_id=None, workdir=workdir, timeout=timeout)).text


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide Runtime, opened from the environment's config on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(load_config())
        return _runtime


def set_runtime(rt: Runtime | None) -> None:
    global _runtime
    _runtime = rt
