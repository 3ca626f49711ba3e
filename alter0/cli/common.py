"""What every CLI command shares: the process runtime from --config, JSON output, the one-line failure."""

from __future__ import annotations

import json
import sys
from typing import Any

from .codes import RET_ERROR


def runtime(args, queue: bool = False):
    """The process's Runtime, opened from the command's --config (or the environment's config); ``queue``: open
    the queue engine now, before anything is committed."""
    from ..runtime import Runtime, set_runtime
    rt = Runtime.open(args.config)
    set_runtime(rt)
    if queue:
        rt.open_queue()
    return rt


def print_json(data: Any) -> None:
    """One JSON document on stdout (objects on one line, lists indented)."""
    print(json.dumps(data, ensure_ascii=False, indent=None if isinstance(data, dict) else 2, default=str))


def fail(message: str, code: int = RET_ERROR) -> int:
    """Print ``alter0: message`` on stderr and return the exit code."""
    print(f"alter0: {message}", file=sys.stderr)
    return code


def command(sub, name: str, fn, help: str, json_flag: bool = False):
    """Add subcommand ``name`` run by ``fn`` (with ``--json`` when it can print JSON); returns its parser."""
    parser = sub.add_parser(name, help=help)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(fn=fn)
    return parser
