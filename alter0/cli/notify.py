"""``alter0 notify`` (the notifier in the foreground), ``alter0 webhook test URL`` (a signed test event now) and
``alter0 webhook log`` (the newest webhook deliveries)."""

from __future__ import annotations

import signal
import sys
import threading
import time

from ..audit import record
from ..channels.base import DeliveryError
from ..notify import notifier, webhooks
from ..secrets import mask_url
from .codes import RET_ERROR, RET_OK, RET_USAGE
from .common import command, fail, print_json, runtime


def cmd_notify(args) -> int:
    """Run the notifier until SIGTERM/SIGINT (for installs with neither a web server nor a channel running)."""
    from ..logging_setup import setup_logging
    rt = runtime(args)
    if not notifier.enabled(rt.cfg):
        return fail("nothing to notify: set notify.webhooks or a channel's notify chat "
                    "(channels.telegram.notify_chat)", RET_USAGE)
    setup_logging(rt.cfg, "notify")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("alter0 notify: running", flush=True)
    notifier.Notifier(rt.cfg, "notify").run(stop)
    return RET_OK


def cmd_webhook(args) -> int:
    if args.action == "log":
        rt = runtime(args)
        rows = webhooks.log(rt.cfg, args.limit)
        if args.json:
            print_json(rows)
            return RET_OK
        for r in rows:
            when = time.strftime("%H:%M:%S", time.localtime(r["delivered_at"] or r["created_at"]))
            print(f"{when} {r['delivery']:<16} {r['event']:<14} {r['state']:<9} attempts {r['attempts']} "
                  f"{r['url']}" + (f"  last error: {r['last_error']}" if r["last_error"] else ""))
        if not rows:
            print("no webhook deliveries yet")
        return RET_OK
    if not args.url:
        return fail("usage: alter0 webhook test URL [--secret SECRET]", RET_USAGE)
    from ..config import load_config
    cfg = load_config(args.config)
    secret = args.secret or next((t.secret for t in webhooks.targets(cfg) if t.url == args.url), None)
    try:
        webhooks.check_url(args.url)
        resp = webhooks.send_test(args.url, secret, cfg["channels.delivery.request_timeout_sec"])
    except DeliveryError as exc:
        outcome, code = f"webhook test to {mask_url(args.url)} failed: {exc.message}", RET_ERROR
    else:
        outcome, code = (f"{resp.status_code} {resp.reason_phrase}" + (f": {resp.text[:300]}" if resp.text else ""),
                         RET_OK)
    record(cfg.output_dir, cfg.secrets() + ([args.secret] if args.secret else []), "webhook.test", who="cli",
           source="cli", what=f"webhook test {mask_url(args.url)}: {outcome}", allowed=True)
    if code != RET_OK:
        return fail(outcome, code)
    print(outcome)
    return RET_OK


def add_commands(sub) -> None:
    command(sub, "notify", cmd_notify, "run the notifier (webhooks, worker.down) in the foreground")
    w = command(sub, "webhook", cmd_webhook, "send a signed test event to a URL, or show the webhook delivery log",
                json_flag=True)
    w.add_argument("action", choices=("test", "log"))
    w.add_argument("url", nargs="?", help="with test: the receiver's http(s) URL")
    w.add_argument("--secret", help="with test: sign with this secret (default: the secret notify.webhooks "
                   "has for this URL; none: unsigned)")
    w.add_argument("--limit", type=int, default=30, help="with log: how many deliveries")
