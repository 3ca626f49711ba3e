"""``alter0 token create|list|revoke`` (per-user API tokens) and ``alter0 config`` (settings, secrets masked)."""

from __future__ import annotations

import getpass
import sys
import json
import time

from ..audit import record
from . import common
from .common import command
from .codes import RET_OK, RET_USAGE
from ..principals import create_token, list_tokens, parse_expiry, revoke_token, token_view


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "never"


def cmd_token(args) -> int:
    """Create (printing the token once), list or revoke per-user API tokens; changes are audited."""
    rt = common.runtime(args)
    secrets = rt.cfg.secrets()
    if args.action == "create":
        if not args.user:
            return common.fail("token create needs --user USER", RET_USAGE)
        row, token = create_token(args.user, args.admin, parse_expiry(args.expires), args.note or "")
        record(rt.output_dir, secrets, "token.create", who=_who(), source="cli", allowed=True,
               what=f"token {row.id} for {row.user_id}{' (admin)' if row.admin else ''}, expires "
                    f"{_when(row.expires_at)}")
        if args.json:
            common.print_json({**token_view(row), "token": token})
        else:
            print(token)
            print(f"token {row.id} for {row.user_id!r}{' (admin: may act as any user)' if row.admin else ''}, "
                  f"expires {_when(row.expires_at)}. It is shown only now; store it safely.", file=sys.stderr)
        return RET_OK
    if args.action == "revoke":
        if args.id is None:
            return common.fail("token revoke needs the token id (see `alter0 token list`)", RET_USAGE)
        row = revoke_token(args.id)
        record(rt.output_dir, secrets, "token.revoke", who=_who(), source="cli", allowed=True,
               what=f"token {row.id} of {row.user_id}")
        print(f"token {row.id} of {row.user_id!r} revoked")
        return RET_OK
    rows = list_tokens(include_dead=args.all)
    if args.json:
        common.print_json(rows)
        return RET_OK
    for r in rows:
        print(f"{r['id']:>4} {r['prefix']}…  {r['user_id']}{' admin' if r['admin'] else ''}  {r['state']}  "
              f"expires {_when(r['expires_at'])}  {r['note']}")
    if not rows:
        print("no tokens: HTTP callers on loopback may name any user and are never admin")
    return RET_OK


def cmd_config(args) -> int:
    """Print every setting as it is in effect (file, environment), secrets masked; opens no database."""
    from ..config import load_config
    values = load_config(args.config).public(admin=True)
    if args.key:
        if args.key not in values:
            return common.fail(f"unknown setting {args.key!r}; `alter0 config` lists them", RET_USAGE)
        values = {args.key: values[args.key]}
    if args.json:
        common.print_json(values)
    else:
        print("\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items()))
    return RET_OK


def add_commands(sub) -> None:
    """Register ``token`` and ``config`` on the CLI's subparsers."""
    t = command(sub, "token", cmd_token, "create, list or revoke per-user API tokens (shown once, stored hashed)",
                json_flag=True)
    t.add_argument("action", choices=("create", "list", "revoke"))
    t.add_argument("id", nargs="?", type=int, help="with revoke: the token id")
    t.add_argument("--user", help="with create: the user the token acts as")
    t.add_argument("--admin", action="store_true", help="with create: may run admin commands and act as any user")
    t.add_argument("--expires", help="with create: 30d, 12h, 2w, YYYY-MM-DD or never (default never)")
    t.add_argument("--note", help="with create: what the token is for")
    t.add_argument("--all", action="store_true", help="with list: revoked and expired tokens too")
    c = command(sub, "config", cmd_config, "show the settings in effect (secrets masked)", json_flag=True)
    c.add_argument("key", nargs="?")
