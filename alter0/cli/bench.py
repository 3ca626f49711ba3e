"""``alter0 bench routing``: replay an annotated chat stream through the router (alter0.tools.bench_routing)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError


def cmd_bench_routing(args) -> int:
    """Print the replay's stats as JSON on stdout, progress on stderr."""
    for path in filter(None, (args.input, args.context)):
        if not Path(path).is_file():
            raise InputError(f"{path} does not exist")
    if args.jobs is not None and args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    from ..tools.bench_routing import BENCH_CANDIDATE_LIMIT, run  # a development tool: loaded only when asked for
    stats = run(args.input, args.context, args.output, args.backend, args.engine,
                args.candidate_limit or BENCH_CANDIDATE_LIMIT, args.config, jobs=args.jobs)
    print(json.dumps(stats))
    return 0


def add_commands(sub) -> None:
    """Register `alter0 bench routing` on the CLI's subparsers."""
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    b = bench.add_parser("routing", help="replay an annotated chat stream through the router, write predictions")
    b.add_argument("--input", required=True, help="JSONL stream: channel_file, idx, speaker, text, time")
    b.add_argument("--context", help="JSONL lines routed first and not scored (earlier conversations)")
    b.add_argument("--output", required=True, help="predictions JSONL: channel_file, idx, pred_thread")
    b.add_argument("--backend", choices=("embedded", "lexical"), default="embedded")
    b.add_argument("--engine", choices=("kernel", "inline"), default="kernel",
                   help="kernel (default): the real route stage on a temp database; inline: the same open-task "
                        "state kept in memory, a faster approximation for tuning")
    b.add_argument("--candidate-limit", type=int, default=None,
                   help="open tasks offered to the router (default: the bench's BENCH_CANDIDATE_LIMIT, 24: IRC "
                        "rooms keep many conversations open at once)")
    b.add_argument("--jobs", type=int, default=None,
                   help="kernel engine: processes routing rooms side by side, each room on a database of its own "
                        "(default: one per core)")
    b.set_defaults(fn=cmd_bench_routing)
