"""``alter0 tracker sync [--repo R]``: run the trackers' reconciliation once by hand (what the channel process
does every channels.<tracker>.reconcile_interval_sec): record what the webhooks missed; the channel acts on it."""

from __future__ import annotations

import json
import sys
import time

from .codes import RET_OK, RET_USAGE
from .common import command, runtime


def cmd_tracker_sync(args) -> int:
    from ..channels import inbox, state
    from ..channels.registry import channels
    from ..channels.trackers.channel import TrackerChannel
    from ..errors import Alter0Error
    rt = runtime(args)
    found = {name: cls for name, cls in channels(rt.cfg).items() if issubclass(cls, TrackerChannel)
             and (args.platform in (None, name)) and rt.cfg[f"channels.{name}.repos"]}
    if args.repo:
        found = {n: c for n, c in found.items()
                 if any(r["repo"].lower() == args.repo.lower() for r in rt.cfg[f"channels.{n}.repos"])}
    if not found:
        print(f"alter0 tracker sync: no configured tracker repository{' ' + args.repo if args.repo else ''} "
              "(channels.forgejo.repos / channels.github.repos)", file=sys.stderr)
        return RET_USAGE
    report, code = [], RET_OK
    for name, cls in found.items():
        channel = cls(rt)
        started = time.perf_counter()
        try:
            saved = state.get(name)
            events, cursor, counts = channel.sync(saved.cursor if saved else None, [args.repo] if args.repo else None)
            fresh = inbox.record(name, events)
            state.polled(name, cursor, got_events=bool(fresh))
            report.append({"platform": name, "issues": counts["issues"], "comments": counts["comments"],
                           "events": len(events), "new": len(fresh),
                           "ms": round((time.perf_counter() - started) * 1000, 1)})
        except Alter0Error as exc:
            report.append({"platform": name, "error": exc.message})
            code = 1
        finally:
            channel.close()
    if args.json:
        print(json.dumps(report))
    for r in [] if args.json else report:
        print(f"{r['platform']}: " + (r["error"] if "error" in r else
              f"{r['issues']} issue(s), {r['comments']} comment(s) updated; {r['new']} new event(s) recorded "
              f"in {r['ms']} ms"))
    return code


def add_commands(sub) -> None:
    t = sub.add_parser("tracker", help="issue trackers (Forgejo/Gitea, GitHub): sync")
    tsub = t.add_subparsers(dest="tracker_cmd", required=True)
    s = command(tsub, "sync", cmd_tracker_sync, "record issues and comments the webhooks missed (reconciliation)",
                json_flag=True)
    s.add_argument("--repo", help="only this owner/name")
    s.add_argument("--platform", choices=("forgejo", "github"), help="only this tracker")
