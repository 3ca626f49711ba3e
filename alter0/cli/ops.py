"""The operations subcommands: doctor, backup, restore, verify, prune, stats.

``add_commands(sub)`` registers them on the CLI's subparsers (called by alter0.cli.app); each
handler takes the parsed args (with the global ``--config``) and returns an exit code; Alter0Error
propagates to the CLI's main, which prints it and exits with its code.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ..config import load_config
from ..ops import backup as ops_backup
from ..ops.doctor import CHECKS, run_preflight
from .channel import channel_problems
from ..migrations import EXPECTED_VERSION
from ..ops.verify import verify
from .common import command
from .progress import progress_bar
from ..ops.restore_config import approve

RET_OK, RET_PROBLEMS = 0, 1
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_window(text: str) -> float:
    """'90', '90s', '15m', '24h', '7d' -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 15m, 24h or 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def cmd_doctor(args) -> int:
    cfg, problems = run_preflight(args.config, skip=tuple(args.skip))
    if cfg is not None and "channels" not in args.skip:
        problems = problems + channel_problems(cfg)
    for problem in problems:
        print(f"alter0 doctor: {problem}")
    if problems:
        return RET_PROBLEMS
    checks = ", ".join(["config", *(c for c in CHECKS if c not in args.skip), "channels"])
    print(f"alter0 doctor: ok ({checks}; schema v{EXPECTED_VERSION}; output {cfg.output_dir})")
    return RET_OK


def cmd_backup(args) -> int:
    cfg = load_config(args.config)
    with progress_bar(args, "backup") as bar:
        path = ops_backup.backup(cfg, Path(args.dest) if args.dest else None, on_progress=bar)
    print(path)
    if args.keep is not None:
        for removed in ops_backup.prune(cfg, args.keep):
            print(f"pruned {removed}", file=sys.stderr)
    return RET_OK


def cmd_restore(args) -> int:
    ask = input if sys.stdin.isatty() and not args.yes else None
    with progress_bar(args, "restore") as bar:
        def asked(diff: list[str]) -> None:
            bar.close()  # the question gets a clean line
            approve(diff, args.yes, ask)

        result = ops_backup.restore(load_config(args.config), Path(args.archive), with_config=args.with_config,
                                    approve=asked, on_progress=bar)
    if args.json:
        _print_json(result)
    else:
        print(f"restored {result['archive']} (schema v{result['schema_version']}); "
              f"the replaced files are in {result['replaced_dir']}")
    return RET_OK


def cmd_verify(args) -> int:
    with progress_bar(args, "verify") as bar:
        checks = verify(load_config(args.config), Path(args.archive) if args.archive else None, bar)
    if args.json:
        _print_json([c.__dict__ for c in checks])
    else:
        for c in checks:
            print(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
    return RET_OK if all(c.ok for c in checks) else RET_PROBLEMS


def cmd_prune(args) -> int:
    for removed in ops_backup.prune(load_config(args.config), args.keep):
        print(f"deleted {removed}")
    return RET_OK


def cmd_stats(args) -> int:
    from ..migrations import open_current
    from ..ops.stats import format_stats, stats
    open_current(load_config(args.config))
    data = stats(args.window)
    _print_json(data) if args.json else print(format_stats(data))
    return RET_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register doctor, backup, restore, verify, prune and stats on the CLI's subparsers."""
    d = command(sub, "doctor", cmd_doctor, "preflight: config, output dirs, database, queue store, executor, router")
    d.add_argument("--skip", action="append", default=[], choices=sorted([*CHECKS, "channels"]),
                   help="leave a check out")
    b = command(sub, "backup", cmd_backup, "online backup to output/backups/alter0-backup-<UTC>.tar.gz")
    b.add_argument("--dest", help="folder for the archive (default output/backups)")
    b.add_argument("--keep", type=int, help="then delete all but the newest KEEP archives")
    r = command(sub, "restore", cmd_restore, "restore an archive (stop the worker first)", json_flag=True)
    r.add_argument("archive")
    r.add_argument("--with-config", action="store_true", help="also restore the config file it holds (shows how "
                   "the executor settings change; asks, or needs --yes when not at a terminal)")
    r.add_argument("--yes", action="store_true", help="with --with-config: apply the config without asking")
    v = command(sub, "verify", cmd_verify, "integrity_check, foreign keys, schema version, queue store", json_flag=True)
    v.add_argument("--archive", help="check this backup archive instead of the live files")
    p = command(sub, "prune", cmd_prune, "delete all but the newest backups")
    p.add_argument("--keep", type=int, default=10, help="archives to keep (default 10)")
    s = command(sub, "stats", cmd_stats, "totals, failures, backlog, p50/p95 stage durations over a window",
                json_flag=True)
    s.add_argument("--window", type=parse_window, default=86400.0, help="e.g. 3600, 15m, 24h (default), 7d")
