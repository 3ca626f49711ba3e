"""The notifier: in every long-running process (worker, web, channel, ``alter0 notify``) a thread competes for one
database lease; the holder scans the feed's producers, turns new events into webhook deliveries (one cursor per
target) and sends them through the outbox. Another process takes over when the holder dies, so a dead worker is
still reported. Chat channels read the feed in their own process (``channels.runner``)."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

from .. import leader
from ..audit import record as audit
from ..channels.outbox import Deliverer
from ..config import Config
from ..errors import ConfigError
from ..liveness import HOST
from ..models import NotifyCursor
from . import feed, webhooks

log = logging.getLogger(__name__)
LEASE = "notifier"
TICK_SEC = 0.1
#: Seconds between two looks behind the feed's cursors (for rows committed late; each tick looks ahead).
LOOKBACK_EVERY_SEC = 5.0
#: Seconds between two looks at the worker table (heartbeats are a second apart).
WORKERS_EVERY_SEC = 1.0


def enabled(cfg: Config) -> bool:
    """Whether anything subscribes: a webhook target, or a channel with a notify chat or room."""
    if cfg["notify.webhooks"]:
        return True
    from ..channels.registry import channels
    try:
        return any(cls.notifies(cfg) for cls in channels(cfg).values())
    except ConfigError:
        return False


class Notifier:
    """One process's contender for the notifier lease, and what the holder does each tick."""

    def __init__(self, cfg: Config, process: str, output_dir=None):
        self.cfg = cfg
        self.process = process
        self.output_dir = output_dir or cfg.output_dir
        self.owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}:{process}"
        self.ttl = float(cfg["notify.lease_sec"])
        self.targets = webhooks.targets(cfg)
        self.deliverers = [Deliverer(webhooks.WebhookSender(cfg, t), cfg["channels.delivery.max_delay_sec"])
                           for t in self.targets]
        self.holding = False
        self.synced = False
        self.looked_back = self.workers_seen = 0.0

    def renew(self) -> bool:
        """Take or keep the lease; False (and stop acting) when another process holds it."""
        self.holding = leader.acquire(LEASE, self.owner, self.ttl)
        return self.holding

    def tick(self) -> int:
        """One round as the holder: produce events, queue each target's deliveries, send what is due."""
        if not self.holding:
            return 0
        if not self.synced:
            self.sync_targets()
        lookback = time.monotonic() - self.looked_back >= LOOKBACK_EVERY_SEC
        workers = time.monotonic() - self.workers_seen >= WORKERS_EVERY_SEC
        feed.produce(self.cfg, lookback, workers)
        if lookback:
            self.looked_back = time.monotonic()
        if workers:
            self.workers_seen = time.monotonic()
        for t in self.targets:
            feed.fan_out(f"webhook:{t.id}", t.platform, lambda e, t=t: webhooks.outgoing(t, e))
        sent = 0
        for d in self.deliverers:
            if not self.holding:
                break
            sent += d.run_once()
        return sent

    def sync_targets(self) -> None:
        """Audit targets added to or removed from ``notify.webhooks`` since the holder last looked; a target
        added again starts at the feed's head (it is not sent what happened while it was gone)."""
        secrets = self.cfg.secrets()
        known = {r.name: r for r in NotifyCursor.select().where(NotifyCursor.name.startswith("webhook:"))}
        for t in self.targets:
            row = known.get(f"webhook:{t.id}")
            if row is None or not row.active:
                feed.set_position(f"webhook:{t.id}", feed.head())
                audit(self.output_dir, secrets, "notify.webhook_added", who=self.process, source="config",
                      what=f"webhook {t.id} {t.shown_url} events {','.join(t.events)}", allowed=True)
        configured = {f"webhook:{t.id}" for t in self.targets}
        for name, row in known.items():
            if row.active and name not in configured:
                feed.set_position(name, row.position, active=False)
                audit(self.output_dir, secrets, "notify.webhook_removed", who=self.process, source="config",
                      what=f"webhook {name.split(':', 1)[1]}", allowed=True)
        self.synced = True

    def keep_lease(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.renew()
            except Exception:  # the database is away: not holding until it is back
                self.holding = False
                log.exception("notifier lease")
            stop.wait(self.ttl / 4)

    def run(self, stop: threading.Event) -> None:
        keeper = threading.Thread(target=self.keep_lease, args=(stop,), name="notifier-lease", daemon=True)
        keeper.start()
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:  # the loop survives anything; the next tick tries again
                    log.exception("notifier tick failed")
                    stop.wait(1.0)
                stop.wait(TICK_SEC)
        finally:
            keeper.join(timeout=5)
            if self.holding:
                try:
                    leader.release(LEASE, self.owner)
                except Exception:
                    log.exception("notifier lease release")


def start(cfg: Config, process: str, stop: threading.Event | None = None) -> threading.Event | None:
    """Run a Notifier in a daemon thread of this process when anything subscribes; its stop event, or None."""
    if not enabled(cfg):
        return None
    stop = stop or threading.Event()
    notifier = Notifier(cfg, process)
    threading.Thread(target=notifier.run, args=(stop,), name="notifier", daemon=True).start()
    return stop


def status(cfg: Config, log_limit: int = 20) -> dict:
    """Who holds the notifier lease, each webhook target's state and the newest deliveries (for ``alter0
    status``, /api/status and the console)."""
    return {"enabled": enabled(cfg), "holder": leader.holder(LEASE), "webhooks": webhooks.snapshot(cfg),
            "log": webhooks.log(cfg, log_limit)}
