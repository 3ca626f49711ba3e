"""``alter0 task diff|merge|discard ID`` and ``alter0 workspace prune``: a task's git worktree from the terminal."""

from __future__ import annotations

import json
import os
import sys

from ..workspaces import actions
from ..workspaces.merge import MergeConflict
from .codes import RET_OK
from .progress import progress_bar


def _who() -> str:
    return f"cli:{os.environ.get('USER') or os.getuid()}"


def receipt_text(r: dict) -> str:
    """A receipt in a few lines: verdict, commits, files, check."""
    d = r["diffstat"]
    lines = [f"receipt: {'verified' if r['verified'] else 'NOT verified'} · {len(r['commits'])} commit(s) on "
             f"{r['branch']} · {d['files']} file(s) +{d['added']}/-{d['deleted']}"]
    lines += [f"  commit {c['sha'][:12]} {c['subject']}" for c in r["commits"]]
    if r["uncommitted"]:
        lines.append(f"  uncommitted: {', '.join(r['uncommitted'][:10])}")
    if r["check"]:
        c = r["check"]
        lines.append(f"  check {' '.join(c['argv'])}: exit {c['exit_code']}"
                     f"{' (timed out)' if c['timed_out'] else ''} in {c['duration_sec']} s")
    lines += [f"  problem: {p}" for p in r["problems"]]
    return "\n".join(lines)


def cmd_task_workspace(rt, args) -> int:
    """diff, merge or discard one task's workspace."""
    try:
        if args.action == "diff":
            view = actions.diff(args.id, stat_only=args.stat)
            if args.json:
                print(json.dumps(view))
                return RET_OK
            for note in view["out_of_band"]["notes"]:
                print(f"note: {note}", file=sys.stderr)
            if view["uncommitted"]:
                print(f"note: uncommitted in the worktree: {', '.join(view['uncommitted'])}", file=sys.stderr)
            if args.stat or not view["diff"]:
                for f in view["files"]:
                    print(f"{f['added'] if f['added'] is not None else '-':>6} {f['deleted'] if f['deleted'] is not None else '-':>6}  {f['path']}")
                print(f"{len(view['files'])} file(s) changed, +{view['added']}/-{view['deleted']} "
                      f"({view['branch']} against {view['base']})")
            else:
                sys.stdout.write(view["diff"])
            return RET_OK
        if args.action == "merge":
            result = actions.merge(rt.cfg, args.id, squash=args.squash, who=_who())
            print(json.dumps(result) if args.json else
                  f"task #{result['task_id']}: merged {result['branch']} into {result['base']} "
                  f"({'squashed' if result['squash'] else 'fast-forward' if result['fast_forward'] else 'merge commit'}"
                  f", {result['sha'][:12]}); worktree removed, task closed")
            return RET_OK
        result = actions.discard(rt.cfg, args.id, force=args.force, who=_who())
        print(json.dumps(result) if args.json else
              f"task #{result['task_id']}: discarded {result['branch']}; worktree removed, task closed")
        return RET_OK
    except MergeConflict as exc:
        print(f"alter0: {exc.message}", file=sys.stderr)
        for path in exc.data["conflicts"]:
            print(f"  conflict: {path}", file=sys.stderr)
        if exc.data["details"]:
            print(exc.data["details"], file=sys.stderr)
        return exc.exit_code


def cmd_prune(args) -> int:
    from ..runtime import Runtime, set_runtime
    rt = Runtime.open(args.config)
    set_runtime(rt)
    with progress_bar(args, "workspace prune") as bar:
        report = actions.prune(rt.cfg, force=args.force, who=_who(), on_progress=bar)
    if args.json:
        print(json.dumps(report))
        return RET_OK
    for r in report["removed"]:
        print(f"removed {r['path']} ({r['why']}, {r['bytes'] / 1e6:.1f} MB)")
    for k in report["kept"]:
        print(f"kept {k['path']}: {k['reason']}")
    print(f"freed {report['disk_bytes_freed'] / 1e6:.1f} MB; {report['worktrees_in_use']} worktree(s) in use take "
          f"{report['disk_bytes_in_use'] / 1e6:.1f} MB")
    return RET_OK


def add_commands(sub) -> None:
    w = sub.add_parser("workspace", help="task worktrees: prune those of closed, merged or discarded tasks")
    w.add_argument("action", choices=("prune",))
    w.add_argument("--force", action="store_true", help="also remove worktrees holding uncommitted changes")
    w.add_argument("--json", action="store_true")
    w.set_defaults(fn=cmd_prune)
