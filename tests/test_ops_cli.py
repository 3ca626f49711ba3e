"""The ops subcommands as the CLI runs them: arguments, output and exit codes."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from alter0.cli.ops import add_commands, parse_window
from support.helpers import open_cfg, write_config

SECTIONS = {"executor": {"name": "command", "command": [sys.executable, "-V"]}, "router": {"backend": "lexical"}}


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="alter0")
    parser.add_argument("--config")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.fn(args)


@pytest.fixture
def config(tmp_path):
    return str(write_config(tmp_path, **SECTIONS))


def test_doctor_ok_then_a_problem(config, capsys, tmp_path):
    assert run("--config", config, "doctor") == 0
    assert "alter0 doctor: ok" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"executor": {"name": "command", "command": ["/nonexistent/x"]},
                               "runtime": {"output_dir": str(tmp_path / "output")}}))
    assert run("--config", str(bad), "doctor", "--skip", "router") == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("alter0 doctor: executor command is not usable") and " -- fix: " in line


def test_backup_verify_prune_restore_stats(config, capsys, tmp_path):
    open_cfg(tmp_path, **SECTIONS)  # the database exists (and stays open in this process) before the backups
    for _ in range(3):
        assert run("--config", config, "backup", "--keep", "2") == 0
    archives = sorted((tmp_path / "output" / "backups").glob("alter0-backup-*.tar.gz"))
    assert len(archives) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith(".tar.gz")
    assert run("--config", config, "verify") == 0
    assert all(line.startswith("ok") for line in capsys.readouterr().out.splitlines())
    assert run("--config", config, "verify", "--archive", str(archives[0]), "--json") == 0
    assert all(c["ok"] for c in json.loads(capsys.readouterr().out))
    assert run("--config", config, "restore", str(archives[-1]), "--json") == 0
    assert json.loads(capsys.readouterr().out)["replaced_dir"]
    assert run("--config", config, "prune", "--keep", "1") == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert run("--config", config, "stats", "--window", "1h", "--json") == 0
    assert json.loads(capsys.readouterr().out)["window_sec"] == 3600
    assert run("--config", config, "stats") == 0
    assert "jobs in the last 24 h: 0" in capsys.readouterr().out


def test_parse_window():
    assert [parse_window(t) for t in ("90", "90s", "15m", "24h", "7d")] == [90, 90, 900, 86400, 604800]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_window("soon")
