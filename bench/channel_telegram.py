"""Telegram channel latency and outage recovery, with a no-op executor, against the Bot API stand-in.

    .venv/bin/python bench/channel_telegram.py [--messages 20] [--outage 60] [--backlog 10]

A fresh install (Huey + SQLite, synchronous=full, lexical router, a no-op command executor), a real `alter0 worker` and a
real `alter0 channel telegram` against tests/support/telegram_api.py on loopback. Latency: one message at a
time, from the moment the update is queued at the stand-in (the user's send) to the "working…" message
(sendMessage arrives), to its first progress edit, and to the reply (the edit carrying the answer), each the
time the stand-in received the request. Outage: sendMessage/editMessageText answer 502 for --outage seconds
while --backlog messages are sent and their jobs finish; recovery = from the outage's end to the last reply
delivered. Prints a table and writes bench/results/<date>-channels.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections import Counter
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.helpers import wait_until  # noqa: E402
from support.install import Alter0Env  # noqa: E402
from support.telegram_api import BotApiStub, channel_config, start_channel  # noqa: E402

USER = 42


def reply_edit(stub: BotApiStub, message_id: int) -> float | None:
    return next((t for t, m, p in stub.calls if m == "editMessageText" and p.get("message_id") == message_id
                 and p.get("text", "").startswith("task #")), None)


def one(stub: BotApiStub, i: int) -> tuple[float, float, float]:
    t0 = time.time()
    stub.user_message(f"ping {i}", USER)
    asked = stub.next_message  # the user's message id
    working = wait_until(lambda: next(((t, p) for t, m, p in stub.calls if m == "sendMessage" and t >= t0
                                       and p.get("text", "").startswith("working")), None), 30, "working…")
    mid = wait_until(lambda: next((mid for (c, mid), msg in list(stub.messages.items())
                                   if c == USER and msg["reply_to"] == asked), None), 30, "the working message")
    done = wait_until(lambda: reply_edit(stub, mid), 30, "the reply")
    first_edit = next((t for t, m, p in stub.calls if m == "editMessageText" and p.get("message_id") == mid), done)
    return working[0] - t0, first_edit - t0, done - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--outage", type=float, default=60.0)
    ap.add_argument("--backlog", type=int, default=10)
    ap.add_argument("--max-delay", type=float, default=10.0, help="channels.delivery.max_delay_sec (default 10)")
    args = ap.parse_args()
    stub = BotApiStub()
    with tempfile.TemporaryDirectory(prefix="chanbench-") as tmp:
        config = channel_config(stub)
        config["channels"]["delivery"]["max_delay_sec"] = args.max_delay
        env = Alter0Env(Path(tmp), **config, router={"backend": "lexical"},
                        executor={"name": "command", "command": ["sh", "-c", "cat >/dev/null; echo ok"]}, runtime={"db": {"synchronous": "full"}})
        try:
            env.start_worker()
            start_channel(env, stub)
            one(stub, -1)  # warm-up, not recorded
            rows = [one(stub, i) for i in range(args.messages)]
            stub.down_methods, stub.down_until = {"sendMessage", "editMessageText"}, time.time() + args.outage
            for i in range(args.backlog):
                stub.user_message(f"during the outage {i}", USER)
            end = stub.down_until
            time.sleep(max(0.0, end - time.time()))
            want = args.messages + 1 + args.backlog
            wait_until(lambda: sum(1 for m in stub.messages.values() if m["text"].startswith("task #")) >= want,
                       args.outage + 120, "the backlog")
            recovered = max(t for t, m, p in stub.calls if m in ("sendMessage", "editMessageText")
                            and p.get("text", "").startswith("task #")) - end
            per_message = Counter(m["reply_to"] for m in stub.messages.values() if m["text"].startswith("task #"))
            dupes = sum(n - 1 for n in per_message.values())
            missing = want - len(per_message)
            failed_calls = sum(1 for t, m, p in stub.calls if end - args.outage <= t < end
                               and m in stub.down_methods)
        except AssertionError:
            for t, m, p in stub.calls[-6:]:
                print(f"{t:.2f} {m} {str(p)[:150]}", file=sys.stderr)
            for f in sorted(env.output.glob("logs/*channel*")):
                print(f.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            env.stop_all()
            stub.close()
    p50 = [round(statistics.median(c) * 1000, 1) for c in zip(*rows)]
    mx = [round(max(c) * 1000, 1) for c in zip(*rows)]
    lines = [
        f"# bench/channel_telegram.py — {time.strftime('%Y-%m-%d %H:%M')}", "",
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the end; Huey + SQLite "
        f"(synchronous=full), lexical router, a no-op command executor, Bot API stand-in on loopback; alter0 "
        f"{subprocess.run(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}.",
        "", "| measure | p50 | max | n |", "|---|---:|---:|---:|",
        f"| message → \"working…\" message sent (ms) | {p50[0]} | {mx[0]} | {len(rows)} |",
        f"| message → first \"working…\" edit (ms) | {p50[1]} | {mx[1]} | {len(rows)} |",
        f"| message → reply (ms) | {p50[2]} | {mx[2]} | {len(rows)} |", "",
        f"Outage: sendMessage/editMessageText answered 502 for {args.outage:.0f} s while {args.backlog} messages "
        f"were sent ({failed_calls} refused calls during it); every reply delivered {recovered:.1f} s after the "
        f"outage ended (channels.delivery.max_delay_sec = {args.max_delay:g}); exactly-once: {want} messages, "
        f"{len(per_message)} answered, {missing} without a reply, {dupes} answered twice.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-channels.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
