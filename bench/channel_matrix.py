"""Matrix channel latency and exactly-once delivery, with a no-op executor, against a real Synapse.

    .venv/bin/python bench/channel_matrix.py [--messages 20] [--burst 10]

A fresh install (Huey + SQLite, synchronous=full, lexical router, a no-op command executor), a real `alter0 worker`
and a real `alter0 channel matrix` against a Synapse on loopback (tests/support/synapse.py; install it with
scripts/ci/install-synapse.sh). Latency: one message at a time, from the user's message to the bot's "working…"
message in its thread, to the first edit of it (the stage), and to the edit carrying the reply; each time is the
homeserver's own ``origin_server_ts`` of the events (one clock, no polling delay). Exactly-once: --burst messages
sent at once, the channel SIGKILLed as soon as the first "working…" message is out, restarted; every message
must get exactly one reply. Outage: --backlog messages are sent, and once each has its "working…" message the
homeserver is frozen (SIGSTOP) for --outage seconds while their jobs finish; recovery = from the homeserver's
return (SIGCONT) to the last reply. Prints a table and writes bench/results/<date>-channel-matrix.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.helpers import wait_until  # noqa: E402
from support.install import Alter0Env  # noqa: E402
from support.synapse import Synapse, channel_config, start_channel  # noqa: E402


def timeline(user, room: str, bot: str) -> dict:
    """For each user message (by event id): its ts, the "working…" ts, the first edit's ts, the reply's ts, and how
    many reply edits/messages it got."""
    events = user.events(room)
    asked = {e["event_id"]: {"t0": e["origin_server_ts"], "replies": 0} for e in events
             if e["sender"] == user.user_id and e["type"] == "m.room.message"}
    working = {}
    for e in events:
        if e["sender"] != bot or e["type"] != "m.room.message":
            continue
        rel = e["content"].get("m.relates_to") or {}
        if rel.get("rel_type") == "m.thread" and rel.get("event_id") in asked:
            row = asked[rel["event_id"]]
            working[e["event_id"]] = row
            row.setdefault("working", e["origin_server_ts"])
            row["replies"] += e["content"]["body"].startswith("task #")  # a reply sent as a new message
        elif rel.get("rel_type") == "m.replace" and rel.get("event_id") in working:
            row = working[rel["event_id"]]
            row.setdefault("edit", e["origin_server_ts"])
            if e["content"]["m.new_content"]["body"].startswith("task #"):
                row.setdefault("reply", e["origin_server_ts"])
                row["replies"] += 1
    return asked


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--burst", type=int, default=10)
    ap.add_argument("--outage", type=float, default=60.0)
    ap.add_argument("--backlog", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mxbench-") as tmp:
        started = time.monotonic()
        (Path(tmp) / "synapse").mkdir()
        server = Synapse(Path(tmp) / "synapse").start()
        synapse_start = time.monotonic() - started
        bot, alice = server.register("bot"), server.register("alice")
        env = Alter0Env(Path(tmp) / "install", **channel_config(server, bot, [alice.user_id]),
                        router={"backend": "lexical"}, runtime={"db": {"synchronous": "full"}},
                        executor={"name": "command", "command": ["sh", "-c", "cat >/dev/null; echo ok"]})
        try:
            env.start_worker()
            env.db()
            proc = start_channel(env, bot)
            room = alice.create_room([bot.user_id])
            wait_until(lambda: alice.members(room).get(bot.user_id) == "join", 30, env.logs)
            rows = []
            for i in range(args.messages + 1):  # the first is a warm-up, not recorded
                sent = alice.send(room, f"ping {i}")
                row = wait_until(lambda: (timeline(alice, room, bot.user_id).get(sent) or {}).get("reply")
                                 and timeline(alice, room, bot.user_id)[sent], 60, env.logs)
                if i:
                    rows.append([(row[k] - row["t0"]) for k in ("working", "edit", "reply")])
            burst = [alice.send(room, f"burst {i}") for i in range(args.burst)]
            wait_until(lambda: any("working" in timeline(alice, room, bot.user_id)[e] for e in burst), 60, env.logs)
            env.kill(proc, signal.SIGKILL)
            start_channel(env, bot, name="restarted")
            wait_until(lambda: all(timeline(alice, room, bot.user_id)[e].get("reply") for e in burst), 120,
                       env.logs)
            from alter0.models import ChannelEvent, Job
            backlog = [alice.send(room, f"before the outage {i}") for i in range(args.backlog)]
            wait_until(lambda: ChannelEvent.select().where(ChannelEvent.event_id << backlog).count() == len(backlog),
                       60, env.logs)  # the channel has them (its inbox): nothing answered yet
            os.kill(server.proc.pid, signal.SIGSTOP)  # the homeserver stops answering (requests hang)
            stopped = time.time()
            try:
                wait_until(lambda: Job.select().where(Job.status == "done").count() >= args.messages + 1
                           + args.burst + args.backlog, 60, "the backlog's jobs")
                time.sleep(max(0.0, stopped + args.outage - time.time()))
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            back = time.time()
            early = sum(1 for e in backlog if timeline(alice, room, bot.user_id)[e].get("reply", 1e15) / 1000 < stopped)
            wait_until(lambda: all(timeline(alice, room, bot.user_id)[e].get("reply") for e in backlog), 180,
                       env.logs)
            recovered = max(timeline(alice, room, bot.user_id)[e]["reply"] for e in backlog) / 1000 - back
            time.sleep(3.0)  # anything sent twice would show by now
            final = timeline(alice, room, bot.user_id)
        finally:
            env.stop_all()
            server.stop()
    counts = Counter(min(r["replies"], 2) for r in final.values())
    want = args.messages + 1 + args.burst + args.backlog
    p50 = [round(statistics.median(c), 1) for c in zip(*rows)]
    mx = [round(max(c), 1) for c in zip(*rows)]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [
        f"# bench/channel_matrix.py — {time.strftime('%Y-%m-%d %H:%M')}", "",
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the end; Huey + SQLite (synchronous=full), "
        f"lexical router, a no-op command executor; Synapse {server.version and _synapse_version()} on loopback "
        f"(SQLite; started in {synapse_start:.1f} s); alter0 {commit}.",
        "", "| measure (homeserver timestamps) | p50 | max | n |", "|---|---:|---:|---:|",
        f"| message → \"working…\" message in its thread (ms) | {p50[0]} | {mx[0]} | {len(rows)} |",
        f"| message → first \"working…\" edit (ms) | {p50[1]} | {mx[1]} | {len(rows)} |",
        f"| message → reply (the edit carrying it) (ms) | {p50[2]} | {mx[2]} | {len(rows)} |", "",
        f"Exactly-once: {want} messages ({args.burst} of them in a burst with the channel SIGKILLed after the first "
        f"\"working…\" and restarted, {args.backlog} across the outage below): {counts.get(1, 0)} answered once, {counts.get(0, 0)} not answered, "
        f"{counts.get(2, 0)} answered more than once.", "",
        f"Outage: the homeserver frozen (SIGSTOP) for {args.outage:.0f} s right after {args.backlog} messages reached "
        f"the inbox ({early} replied before the freeze); every "
        f"reply delivered {recovered:.1f} s after it came back (channels.delivery.max_delay_sec = 10, request "
        f"timeout 10 s).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-channel-matrix.md").write_text(text)


def _synapse_version() -> str:
    from support.synapse import VENV
    return subprocess.run([str(VENV / "bin" / "python"), "-c", "import synapse; print(synapse.__version__)"],
                          capture_output=True, text=True, cwd="/").stdout.strip()


if __name__ == "__main__":
    main()
