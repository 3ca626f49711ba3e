"""``alter0 channel NAME``: run one chat channel (its poll, inbox, job follow-up and delivery) as its own process."""

from __future__ import annotations

import signal
import sys
import threading

from .codes import RET_OK, RET_USAGE
from .common import runtime


def cmd_channel(args) -> int:
    """Check the channel's settings, then run it until SIGTERM/SIGINT (a restart resumes from the database)."""
    from ..channels.registry import channel_class
    from ..channels.runner import Runner
    from ..logging_setup import setup_logging
    rt = runtime(args)
    cls = channel_class(rt.cfg, args.platform)
    problems = cls.problems(rt.cfg)
    for problem in problems:
        print(f"alter0 channel {args.platform}: {problem}", file=sys.stderr)
    if problems:
        return RET_USAGE
    channel = cls(rt)
    setup_logging(rt.cfg, f"channel-{args.platform}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from ..notify import notifier
    notifier.start(rt.cfg, f"channel-{args.platform}", stop)
    print(f"alter0 channel {args.platform}: running", flush=True)
    Runner(channel).run(stop)
    return RET_OK


def channel_problems(cfg) -> list[str]:
    """The doctor's channel check: every channel in ``channels.enabled`` is registered and configured, and (when
    configured) its platform answers."""
    from ..channels.registry import channel_class
    from ..errors import ConfigError
    out = []
    for platform in cfg["channels.enabled"]:
        try:
            cls = channel_class(cfg, platform)
            found = cls.problems(cfg)
            out += [f"channel {platform}: {p}" for p in found or cls.checks(cfg)]
        except ConfigError as exc:
            out.append(exc.message)
    return out


def add_commands(sub) -> None:
    c = sub.add_parser("channel", help="run a channel (telegram, matrix, forgejo, github) in the foreground")
    c.add_argument("platform", help="a channel from channels.registry, e.g. telegram or matrix")
    c.set_defaults(fn=cmd_channel)
