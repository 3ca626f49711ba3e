"""``alter0 bench routing``: replay an annotated chat stream through the router (alter0.tools.bench_routing)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .progress import NoBar, progress_bar


def cmd_bench_routing(args) -> int:
    """Print the replay's stats as JSON on stdout, progress on stderr (or, with --product-set, its table)."""
    if args.product_set:
        return _product_set(args)
    if not args.input or not args.output:
        raise InputError("--input and --output are required (or --product-set)")
    for path in filter(None, (args.input, args.context)):
        if not Path(path).is_file():
            raise InputError(f"{path} does not exist")
    if args.jobs is not None and args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    from ..tools.bench_routing import BENCH_CANDIDATE_LIMIT, run  # a development tool: loaded only when asked for
    with progress_bar(args, "bench routing") as bar:
        on_terminal = not isinstance(bar, NoBar)  # the bar replaces the periodic progress lines
        stats = run(args.input, args.context, args.output, args.backend, args.engine,
                    args.candidate_limit or BENCH_CANDIDATE_LIMIT, args.config, jobs=args.jobs,
                    progress=not on_terminal, on_progress=bar if on_terminal else None)
    print(json.dumps(stats))
    return 0


def _product_set(args) -> int:
    """Route and close every episode of the product set (one split) with the configured backends; print the table
    and, last, one JSON line of the headline numbers."""
    from ..config import load_config
    from ..routing.registry import build_closer, build_router
    from ..tools import product_set  # a development tool: loaded only when asked for
    path = Path(args.product_set_path or product_set.PATH)
    if not path.is_file():
        raise InputError(f"{path} does not exist (the product set lives in the source tree's tests/regression)")
    cfg = load_config(args.config, overrides={"router.backend": args.backend})
    data = product_set.load(path)
    routing = product_set.run_routing(build_router(cfg), cfg["task.routing_confidence_threshold"], args.split, data)
    closing = product_set.run_closing(build_closer(cfg), cfg["task.close_confidence_threshold"], args.split, data)
    print(product_set.report(routing, closing, show_misses=args.misses))
    print(json.dumps({"split": args.split, "backend": args.backend, "routing_acc": round(routing["accuracy"], 1),
                      "routing_n": routing["n"], "ece": round(routing["ece"], 1),
                      "closing_acc": round(closing["accuracy"], 1), "closing_n": closing["n"],
                      "false_closes": round(closing["false_closes"], 1),
                      "close_precision": round(closing["precision"], 1),
                      "close_recall": round(closing["recall"], 1)}))
    return 0


def add_commands(sub) -> None:
    """Register `alter0 bench routing` on the CLI's subparsers."""
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    b = bench.add_parser("routing", help="replay an annotated chat stream through the router, write predictions")
    b.add_argument("--input", help="JSONL stream: channel_file, idx, speaker, text, time")
    b.add_argument("--context", help="JSONL lines routed first and not scored (earlier conversations)")
    b.add_argument("--output", help="predictions JSONL: channel_file, idx, pred_thread")
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
    b.add_argument("--product-set", action="store_true",
                   help="instead of a chat stream: route and close the product-conversation set "
                        "(tests/regression/product_set.json) and print accuracy per category and language")
    b.add_argument("--product-set-path", help="another file in the product set's format")
    b.add_argument("--split", choices=("dev", "test", "all"), default="test",
                   help="--product-set: which split to score (default: test, the split nothing was tuned on)")
    b.add_argument("--misses", action="store_true", help="--product-set: list every wrong decision")
    b.set_defaults(fn=cmd_bench_routing)
