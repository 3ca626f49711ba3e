"""Deployment assets: systemd units verify, Docker files are well formed, deploy-check agrees with the Procfile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import helpers
from support.helpers import ROOT

UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
DEPLOY_CHECK = ROOT / "scripts" / "deploy-check"
PROCFILE = ("web: gunicorn -c web/gunicorn.conf.py --bind 127.0.0.1:${PORT:-8080} 'web:create_app()'\n"
            "worker: alter0 worker\n")


def missing_tool(reason: str) -> None:
    """Skip locally; fail in CI, where scripts/ci/install-ops.sh installs the tool."""
    helpers.skip_or_fail(f"{reason} (scripts/ci/install-ops.sh installs it)")


def test_every_unit_exists():
    assert [u.name for u in UNITS] == ["alter0-forgejo.service", "alter0-matrix.service", "alter0-telegram.service",
                                      "alter0-web.service",
                                      "alter0-worker.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify(unit, tmp_path):
    if not shutil.which("systemd-analyze"):
        missing_tool("systemd-analyze is not installed")
    # The units name binaries under /opt/alter0; verify checks they exist, so point them at stubs here.
    prefix = tmp_path / "opt" / "alter0"
    text = unit.read_text()
    for binary in set(re.findall(r"^ExecStart=-?(/opt/alter0/\S+)", text, re.M)):
        stub = prefix / Path(binary).relative_to("/opt/alter0")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(text.replace("/opt/alter0", str(prefix)))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and unit.name not in result.stderr, result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_units_are_hardened_and_outlast_the_drain(unit):
    from alter0.config import SETTINGS_BY_KEY
    text = unit.read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "Restart=always", "User=alter0",
                 "WorkingDirectory=/opt/alter0", "EnvironmentFile=-/etc/alter0/alter0.env"):
        assert line in text.splitlines(), line
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1))
    assert timeout > SETTINGS_BY_KEY["runtime.shutdown.drain_timeout_sec"].default


def docker_steps() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "docker" / "Dockerfile").read_text())
    return [(ln.split()[0].upper(), ln.partition(" ")[2].strip()) for ln in text.splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def test_dockerfile_structure():
    steps = docker_steps()
    words = [w for w, _ in steps]
    assert steps[0][0] == "FROM" and re.match(r"python:3\.\d+-slim$", steps[0][1])
    user = [a for w, a in steps if w == "USER"][-1]
    assert user not in ("root", "0") and words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert '["/app/output"]' in [a for w, a in steps if w == "VOLUME"]
    assert any("/health" in a for w, a in steps if w == "HEALTHCHECK")
    assert "ALTER0_OUTPUT_DIR=/app/output" in " ".join(a for w, a in steps if w == "ENV")


def test_every_path_the_dockerfile_copies_exists():
    for word, args in docker_steps():
        if word == "COPY":
            for src in [a for a in args.split() if not a.startswith("--")][:-1]:
                assert (ROOT / src).exists(), f"docker/Dockerfile copies {src}, which does not exist"


def test_compose_runs_web_and_worker_on_one_volume():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    assert worker["command"] == ["alter0", "worker"] and worker["stop_signal"] == "SIGINT"
    assert web["volumes"] == worker["volumes"] == ["output:/app/output"] and "output" in compose["volumes"]
    for svc in (web, worker):
        assert svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert (ROOT / "docker" / svc["build"]["context"]).resolve() == ROOT


def make_tree(tmp_path: Path) -> Path:
    """A minimal repository holding the real deployment assets and the Procfile the brief specifies."""
    root = tmp_path / "repo"
    for rel in ("deploy", "docker"):
        shutil.copytree(ROOT / rel, root / rel)
    (root / "scripts").mkdir(parents=True)
    for name in ("backup-local.sh", "restore-local.sh", "deploy-check"):
        shutil.copy2(ROOT / "scripts" / name, root / "scripts" / name)
    for rel in ("pyproject.toml", "README.md", "web/gunicorn.conf.py", "config/config.example.json",
                "alter0/__init__.py", "tasks/__init__.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / "Procfile").write_text(PROCFILE)
    return root


def deploy_check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEPLOY_CHECK), "--root", str(root)], capture_output=True,
                          text=True, timeout=60)


def test_deploy_check_passes_on_consistent_assets(tmp_path):
    result = deploy_check(make_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("deploy-check: OK")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


MUTATIONS = {
    "procfile": ("Procfile", "alter0 worker", "huey_consumer tasks.huey",
                 "alter0-worker.service: ExecStart"),
    "timeout": ("deploy/systemd/alter0-worker.service", "TimeoutStopSec=45", "TimeoutStopSec=20",
                "TimeoutStopSec=20 must exceed the drain timeout"),
    "signal": ("deploy/systemd/alter0-worker.service", "KillSignal=SIGINT", "KillSignal=SIGTERM",
               "KillSignal= must be SIGINT"),
    "root": ("deploy/systemd/alter0-web.service", "User=alter0", "User=root", "not root"),
    "hardening": ("deploy/systemd/alter0-web.service", "NoNewPrivileges=yes\n", "",
                  "hardening NoNewPrivileges=yes is missing"),
    "copy": ("docker/Dockerfile", "COPY tasks/ tasks/", "COPY tasks/ tasks/\nCOPY missing.txt ./",
             "COPY source missing.txt does not exist"),
    "cmd": ("docker/Dockerfile", '"web:create_app()"]', '"web:app"]', "CMD"),
    "compose_signal": ("docker/compose.yaml", "stop_signal: SIGINT", "stop_signal: SIGTERM",
                       "worker stop_signal must be SIGINT"),
    "compose_volume": ("docker/compose.yaml", "    command: [\"alter0\", \"worker\"]\n    volumes:\n"
                       "      - output:/app/output", "    command: [\"alter0\", \"worker\"]\n    volumes:\n"
                       "      - other:/app/output", "one shared volume"),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_deploy_check_reports_each_inconsistency(tmp_path, case):
    rel, old, new, message = MUTATIONS[case]
    root = make_tree(tmp_path)
    edit(root / rel, old, new)
    result = deploy_check(root)
    assert result.returncode == 1 and message in result.stdout, result.stdout


def test_deploy_check_reports_missing_assets(tmp_path):
    root = make_tree(tmp_path)
    (root / "Procfile").unlink()
    (root / "scripts" / "restore-local.sh").unlink()
    result = deploy_check(root)
    assert "Procfile: missing" in result.stdout and "scripts/restore-local.sh: missing" in result.stdout


def test_deploy_check_passes_on_this_repository():
    result = deploy_check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", ["backup-local.sh", "restore-local.sh", "ci/install-ops.sh"])
def test_shell_scripts_parse(script):
    path = ROOT / "scripts" / script
    assert os.access(path, os.X_OK)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
