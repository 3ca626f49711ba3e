"""The Dramatiq binding: a RedisBroker, the three stage actors and per-task generate locks, from alter0's config.

``python -m dramatiq tasks.dramatiq_engine.app:broker --processes 1 --threads 4`` finds ``broker`` here (built
lazily from the environment's config); ``alter0 worker`` runs the same binding in-process (consumer.py).
Thin: all stage logic is in alter0.stages.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware, Retries
from peewee import InterfaceError, OperationalError

from alter0 import jobstate, stages
from alter0.config import load_config
from alter0.errors import ConfigError
from alter0.runtime import get_runtime
from alter0.secrets import mask_url
from alter0.supervisor import Supervisor

log = logging.getLogger("alter0.supervisor")

#: Redis key prefix of alter0's queues and locks (isolate installs by the URL's db number).
NAMESPACE = "alter0"
#: The one queue of the three stages: a single consumer stays busy while any stage has work.
QUEUE_NAME = "alter0"
#: Local priority of each stage's messages in a worker (lower runs first): route and close are short.
PRIORITY = {"route": 0, "close": 0, "generate": 10}
#: Milliseconds without a broker heartbeat before another worker re-queues a dead worker's unacked messages.
HEARTBEAT_TIMEOUT_MS = 15_000
#: Broker commands out of a million that also run that maintenance.
MAINTENANCE_CHANCE = 20_000
#: Times a message is re-delivered while alter0's database is unreachable (backoff 0.25 s .. 5 s).
STORE_RETRIES = 40
#: Most messages ``pending`` lists (a bigger backlog answers None: "cannot tell").
PENDING_LIMIT = 20_000
#: Longest wait, in seconds, between two tries at a busy task lock.
LOCK_WAIT_MAX_SEC = 2.0


def store_unavailable(retries: int, exc: BaseException) -> bool:
    """Dramatiq re-delivers only when the database was unreachable; stage failures follow alter0's policies."""
    return isinstance(exc, (OperationalError, InterfaceError)) and retries < STORE_RETRIES


class TaskLocks:
    """One Redis lock per task around generate: SET NX with a TTL, renewed while held, so a dead worker's
    lock expires by itself. The DB (earlier_blocker + job leases) orders generations; this bounds them across hosts."""

    RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
    RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"

    def __init__(self, client, namespace: str, ttl_sec: float):
        self.client, self.prefix, self.ttl_ms = client, f"{namespace}:task-lock:", int(ttl_sec * 1000)
        self.held: dict[str, str] = {}
        self._mutex = threading.Lock()
        self._release = client.register_script(self.RELEASE)
        self._renew = client.register_script(self.RENEW)

    def acquire(self, task_id: int, token: str) -> bool:
        key = f"{self.prefix}{task_id}"
        if not self.client.set(key, token, nx=True, px=self.ttl_ms):
            return False
        with self._mutex:
            self.held[key] = token
        return True

    def release(self, task_id: int, token: str) -> None:
        key = f"{self.prefix}{task_id}"
        with self._mutex:
            if self.held.get(key) == token:
                del self.held[key]
        self._release(keys=[key], args=[token])

    def renew(self) -> None:
        """Push back the expiry of every lock this process holds."""
        with self._mutex:
            held = dict(self.held)
        for key, token in held.items():
            self._renew(keys=[key], args=[token, self.ttl_ms])


class SupervisorMiddleware(Middleware):
    """Starts alter0's Supervisor (heartbeats, cancels, reclaim) and the lock renewal once per worker
    process; on shutdown drains in-flight stages before Dramatiq stops its threads."""

    def __init__(self, locks: TaskLocks):
        self.locks = locks
        self.supervisor: Supervisor | None = None
        self._stop = threading.Event()

    def after_worker_boot(self, broker, worker) -> None:
        rt = get_runtime()
        self.supervisor = Supervisor(rt)
        self.supervisor.start()
        period = self.locks.ttl_ms / 3000
        threading.Thread(target=self._renew_loop, args=(period,), name="alter0-task-locks", daemon=True).start()
        log.info("dramatiq worker %s up: %d threads on %s", rt.owner, worker.worker_threads, QUEUE_NAME)

    def before_worker_shutdown(self, broker, worker) -> None:
        if self.supervisor is not None and not self.supervisor.stop_event.is_set():
            self.supervisor.stop(get_runtime().cfg["runtime.shutdown.drain_timeout_sec"])
        self._stop.set()

    def _renew_loop(self, period: float) -> None:
        while not self._stop.wait(period):
            try:
                self.locks.renew()
            except Exception:
                log.exception("renewing task locks failed")


class Binding:
    """One broker with alter0's middleware, its three stage actors and its task locks."""

    def __init__(self, cfg):
        url = cfg["runtime.queue.broker_url"]
        if not url or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"runtime.queue.broker_url = {mask_url(url)!r}: the dramatiq backend needs "
                              "redis://host:port/db")
        self.url = url
        self.broker = RedisBroker(url=url, namespace=NAMESPACE, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
                                  maintenance_chance=MAINTENANCE_CHANCE, middleware=[])
        self.locks = TaskLocks(self.broker.client, NAMESPACE, cfg["runtime.queue.lease_sec"])
        self.broker.add_middleware(Retries(max_retries=0, retry_when=store_unavailable,
                                           min_backoff=250, max_backoff=5000))
        self.supervision = SupervisorMiddleware(self.locks)
        self.broker.add_middleware(self.supervision)
        self.actors = {name: dramatiq.actor(fn, broker=self.broker, actor_name=f"alter0.{name}",
                                            queue_name=QUEUE_NAME, priority=PRIORITY[name], max_retries=0)
                       for name, fn in (("route", self.route), ("generate", self.generate), ("close", self.close))}

    def route(self, job_id: int) -> None:
        stages.run_stage(get_runtime(), "route", job_id)

    def close(self, job_id: int) -> None:
        stages.run_stage(get_runtime(), "close", job_id)

    def generate(self, job_id: int, waits: int = 0) -> None:
        """Run generate under the task's lock; a busy lock sends the message again a little later."""
        rt = get_runtime()
        task_id = jobstate.task_of(job_id)
        if task_id is None:  # not routed (or gone): run_stage drops it
            stages.run_stage(rt, "generate", job_id)
            return
        token = f"{rt.owner}:{job_id}"
        if not self.locks.acquire(task_id, token):
            delay = min(LOCK_WAIT_MAX_SEC, 0.02 * 2 ** waits)
            jobstate.mark_dispatched(job_id)
            self.actors["generate"].send_with_options(args=(job_id, waits + 1), delay=int(delay * 1000))
            return
        try:
            stages.run_stage(rt, "generate", job_id)
        finally:
            self.locks.release(task_id, token)

    def backlog(self) -> int:
        """Messages waiting in Redis (ready plus delayed)."""
        client = self.broker.client
        return int(client.llen(f"{NAMESPACE}:{QUEUE_NAME}")) + int(client.llen(f"{NAMESPACE}:{QUEUE_NAME}.DQ"))

    def pending(self) -> set[tuple[str, int]] | None:
        """Every message Redis holds until it is acknowledged: ready, delayed, and taken by a worker (a dead
        worker's are given back by Dramatiq after HEARTBEAT_TIMEOUT_MS)."""
        client = self.broker.client
        found: set[tuple[str, int]] = set()
        for key in (f"{NAMESPACE}:{QUEUE_NAME}.msgs", f"{NAMESPACE}:{QUEUE_NAME}.DQ.msgs"):
            if client.hlen(key) > PENDING_LIMIT:
                return None
            for raw in client.hvals(key):
                message = dramatiq.Message.decode(raw)
                if message.args:
                    found.add((message.actor_name.rpartition(".")[2], int(message.args[0])))
        return found


_bindings: dict[str, Binding] = {}
_bindings_lock = threading.Lock()


def binding_for(cfg) -> Binding:
    """The process's binding for this broker URL (built once, and made Dramatiq's global broker)."""
    with _bindings_lock:
        url = cfg["runtime.queue.broker_url"]
        if url not in _bindings:
            _bindings[url] = Binding(cfg)
            dramatiq.set_broker(_bindings[url].broker)
        return _bindings[url]


def __getattr__(name: str):
    if name == "broker":  # for `python -m dramatiq tasks.dramatiq_engine.app:broker`
        return binding_for(load_config()).broker
    raise AttributeError(name)
