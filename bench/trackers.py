"""Issue tracker latency and reconciliation, with a no-op executor, against the Forgejo stand-in.

    .venv/bin/python bench/trackers.py [--issues 20] [--reconcile 100]

A fresh install (Huey + SQLite, lexical router, a no-op command executor, workspace.mode none), a real
`alter0 worker`, real gunicorn serving `/hooks/forgejo` and a real `alter0 channel forgejo` against
tests/support/forgejo_api.py on loopback. Latency: one issue at a time, from the moment the stand-in sends the
signed `issues` webhook to the "working on it" comment (its POST arrives at the stand-in) and to the reply
comment. Reconciliation: --reconcile issues opened with their webhooks lost, then `alter0 tracker sync`:
the sync itself (every page listed, events recorded) and until every issue has its reply comment.
Prints a table and writes bench/results/<date>-trackers.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.forgejo_api import BOT, ForgejoStub, start_tracker_channel, tracker_config  # noqa: E402
from support.helpers import wait_until  # noqa: E402
from support.install import Alter0Env  # noqa: E402
from support.web import start_gunicorn  # noqa: E402

REPO = "bench/app"


def one(stub: ForgejoStub, title: str) -> tuple[float, float]:
    n_calls = len(stub.calls)
    t0 = time.time()
    issue = stub.open_issue("alice", REPO, title, "noop")
    number = issue["number"]
    wait_until(lambda: len(stub.comments(REPO, number, by=BOT)) >= 2, 30, "the reply comment")
    posts = [t for t, (m, op, d) in zip(stub.times[n_calls:], stub.calls[n_calls:]) if op == "issueCreateComment"]
    return posts[0] - t0, posts[1] - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--issues", type=int, default=20)
    ap.add_argument("--reconcile", type=int, default=100)
    ap.add_argument("--outage", type=float, default=60.0, help="seconds every tracker API call answers 503")
    ap.add_argument("--backlog", type=int, default=10, help="issues opened during the outage")
    args = ap.parse_args()
    stub = ForgejoStub()
    stub.add_repo(REPO)
    with tempfile.TemporaryDirectory(prefix="trackerbench-") as tmp:
        env = Alter0Env(Path(tmp), **tracker_config(stub, REPO), router={"backend": "lexical"},
                        executor={"name": "command", "command": ["sh", "-c", "cat >/dev/null; echo ok"]})
        env.env["ALTER0_FORGEJO_TOKEN"] = stub.token
        try:
            env.start_worker()
            server = start_gunicorn(env)
            stub.hook_url = f"{server.url}/hooks/forgejo"
            start_tracker_channel(env, stub)
            one(stub, "warm-up")
            rows = [one(stub, f"issue {i}") for i in range(args.issues)]
            stub.drop_webhooks = True
            first = stub.repos[REPO]["_next_number"]
            for i in range(args.reconcile):
                stub.open_issue("alice", REPO, f"lost {i}", "noop")
            t0 = time.time()
            report = json.loads(env.cli("tracker", "sync", "--json").stdout)[0]
            cli_sec = time.time() - t0
            wait_until(lambda: all(len(stub.comments(REPO, n, by=BOT)) >= 2
                                   for n in range(first, first + args.reconcile)), 600, "every reconciled reply")
            all_sec = time.time() - t0
            stub.drop_webhooks = False
            first_down = stub.repos[REPO]["_next_number"]
            stub.down_until = time.time() + args.outage
            for i in range(args.backlog):
                stub.open_issue("alice", REPO, f"during the outage {i}", "noop")
            down = range(first_down, first_down + args.backlog)
            wait_until(lambda: all(len(stub.comments(REPO, n, by=BOT)) >= 2 for n in down), args.outage + 300,
                       "every reply after the outage")
            time.sleep(3.0)  # anything sent twice would show by now
            recovered = max(c["_t"] for n in down for c in stub.comments(REPO, n, by=BOT)) - stub.down_until
            counts = [len(stub.comments(REPO, n, by=BOT)) for n in down]
        finally:
            env.stop_all()
            stub.close()
    working = sorted(r[0] * 1000 for r in rows)
    reply = sorted(r[1] * 1000 for r in rows)
    lines = [
        f"# Issue trackers ({time.strftime('%Y-%m-%d')}, `bench/trackers.py`, no-op executor, 2 shared cores)",
        "",
        "| measure | p50 | max |", "|---|---|---|",
        f"| webhook → \"working on it\" comment ({args.issues} issues) | {statistics.median(working):.0f} ms | "
        f"{max(working):.0f} ms |",
        f"| webhook → reply comment | {statistics.median(reply):.0f} ms | {max(reply):.0f} ms |",
        "",
        f"Reconciliation of {args.reconcile} issues whose webhooks were lost: `alter0 tracker sync` listed "
        f"{report['issues']} issues and {report['comments']} comments ({report['events']} events, {report['new']} "
        f"new) in {report['ms']:.0f} ms inside the command ({cli_sec * 1000:.0f} ms with the CLI's start-up); every "
        f"one of them had its reply comment {all_sec:.1f} s after the sync started.",
        "",
        f"Outage: every API call answered 503 for {args.outage:.0f} s while {args.backlog} issues were opened; the "
        f"last of their comments was written {recovered:.1f} s after the tracker came back; bot comments per issue "
        f"{sorted(set(counts))} (a \"working on it\" comment and one reply each: none lost, none twice).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-trackers.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
