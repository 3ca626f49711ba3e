"""Every failure is one clear line: a corrupt or truncated database, a full or read-only disk, a supervisor that
cannot start, a stage log that cannot be written, and bad input. Real files, a real small tmpfs, real
processes (worker, CLI, gunicorn)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time

import pytest
import requests

from support.helpers import BIN, skip_or_fail, wait_until
from support.web import make_app


def _one_line(result) -> str:
    """The CLI's stderr, asserted to be one ``alter0`` line and no traceback."""
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("alter0"), err
    return err


def _checkpointed_db(env):
    """The install's database file with its WAL folded in (no process holds it)."""
    path = env.output / "db" / "alter0.db"
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


@pytest.fixture
def small_disk():
    """Factory: small_disk(path, mb) mounts a tmpfs of ``mb`` MiB at ``path``; unmounted after the test."""
    mounted = []

    def mount(path, mb: int = 4):
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            skip_or_fail(f"cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(folder) -> None:
    """Write zeros into ``folder`` until its disk is full."""
    with open(folder / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


# --- integrity at start ------------------------------------------------------------------------------

def test_doctor_and_worker_refuse_a_corrupt_database(a0):
    for i in range(3):
        a0.send(f"message {i}", "--async")
    path = _checkpointed_db(a0)
    with open(path, "r+b") as fh:  # 8 KiB of random bytes in the middle of the file
        fh.seek(path.stat().st_size // 2 - 4096)
        fh.write(os.urandom(8192))
    doctor = a0.cli("doctor", "--skip", "executor", check=False)
    assert doctor.returncode == 1
    line = next(ln for ln in doctor.stdout.splitlines() if "database" in ln)
    assert f"database {path} is corrupt (quick_check:" in line and "alter0 restore ARCHIVE" in line
    worker = subprocess.run([str(BIN / "alter0"), "worker"], env=a0.env, cwd=a0.tmp, capture_output=True,
                            text=True, timeout=60)
    assert worker.returncode != 0 and "is corrupt (quick_check:" in worker.stderr
    assert "alter0 restore ARCHIVE" in worker.stderr and "Traceback" not in worker.stderr


def test_truncated_database_is_one_line_from_every_command(a0):
    for i in range(3):
        a0.send(f"message {i}", "--async")
    path = _checkpointed_db(a0)
    os.truncate(path, path.stat().st_size // 2)
    for args in (("task", "list"), ("send", "hello", "--async"), ("status",)):
        result = a0.cli(*args, check=False)
        assert result.returncode == 8, (args, result.stderr)
        line = _one_line(result)
        assert f"database {path} is corrupt" in line and "alter0 restore ARCHIVE" in line, line


def test_worker_whose_supervisor_cannot_start_exits_non_zero(a0):
    a0.cli("status")  # creates and migrates the database
    conn = sqlite3.connect(str(a0.output / "db" / "alter0.db"))
    conn.execute("CREATE TRIGGER refuse_workers BEFORE INSERT ON worker BEGIN SELECT RAISE(ABORT, 'no workers'); END")
    conn.commit()
    conn.close()
    started = time.monotonic()
    worker = subprocess.run([str(BIN / "alter0"), "worker", "--no-preflight"], env=a0.env, cwd=a0.tmp,
                            capture_output=True, text=True, timeout=60)
    assert worker.returncode != 0 and time.monotonic() - started < 30
    line = _one_line(worker)
    assert line.startswith("alter0: the supervisor could not start") and "no workers" in line


# --- full and read-only disks ------------------------------------------------------------------------

def test_full_disk_is_a_503_and_one_cli_line(make_env, stub_runtime, small_disk):
    env = make_env()
    disk = small_disk(env.output, mb=4)
    app = make_app(stub_runtime(threads=4, env=env))
    client = app.test_client()
    assert client.get("/health").get_json()["writable"] is True
    assert client.post("/api/jobs", json={"content": "before", "user_id": "u"}).status_code == 202
    app.queue.join()
    _fill(disk)
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["error"]["code"] == "storage_unavailable"
    assert "disk is full" in health.get_json()["error"]["message"]
    full = client.post("/api/jobs", json={"content": "x" * 60000, "user_id": "u"})
    assert full.status_code == 503, full.get_data(as_text=True)
    error = full.get_json()["error"]
    assert error["code"] == "storage_unavailable" and str(env.output / "db" / "alter0.db") in error["message"]
    assert "disk is full" in error["message"]
    result = env.cli("send", "y" * 60000, "--async", check=False)
    assert result.returncode == 8
    line = _one_line(result)
    assert str(env.output / "db" / "alter0.db") in line and "disk is full" in line and "free space" in line


def test_read_only_disk_is_one_cli_line(a0, small_disk):
    disk = small_disk(a0.output, mb=8)
    a0.send("before", "--async")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    for args in (("send", "read only", "--async"), ("job", "retry", "1")):
        result = a0.cli(*args, check=False)
        assert result.returncode == 8, (args, result.stderr)
        line = _one_line(result)
        assert str(a0.output) in line and "read-only file system" in line and "write access" in line, line
    doctor = a0.cli("doctor", "--skip", "executor", check=False)
    assert doctor.returncode == 1 and "not writable" in doctor.stdout


def test_stage_log_that_cannot_be_written_never_fails_a_stage(a0):
    worker = a0.start_worker()
    a0.send("first")
    today = a0.output / "orchestrator" / time.strftime("%Y-%m-%d", time.gmtime())
    for child in today.glob("*"):
        child.unlink()
    today.rmdir()
    today.write_text("not a directory")  # every stage-log write of today now fails
    for text in ("second", "third"):
        assert a0.send(text)["status"] == "done"
    assert worker.poll() is None
    assert a0.logs().count("stage log not written") == 1


# --- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["content", "user_id"])
def test_lone_surrogates_are_a_400(client, field):
    body = {"content": "hello", "user_id": "u"}
    raw = json.dumps(body).replace('"hello"' if field == "content" else '"u"', '"a\\ud800b"')
    response = client.post("/api/jobs", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == {"code": "bad_input", "message": (
        f"{field} contains an unpaired surrogate (U+D800) at character 1; send valid UTF-8 text")}


def test_lone_surrogate_in_a_command_is_a_400(client):
    raw = '{"command": "/help \\udfff", "user_id": "u"}'
    response = client.post("/api/command", data=raw, content_type="application/json")
    assert response.status_code == 400 and "unpaired surrogate (U+DFFF)" in response.get_json()["error"]["message"]


def test_json_nested_100k_deep_is_a_400(client):
    response = client.post("/api/jobs", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == {"code": "bad_json", "message": "the body's JSON is nested too deeply"}


def test_config_set_with_a_bad_value_is_a_400(client):
    from alter0.principals import create_token
    _, token = create_token("root", admin=True)  # /config set is an admin command: over HTTP it needs an admin token
    response = client.post("/api/command", json={"command": "/config set runtime.queue.workers lots",
                                                 "user_id": "admin"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "bad_input"
    assert "runtime.queue.workers" in response.get_json()["error"]["message"]


def test_chunked_10mb_body_is_a_413(live_server):
    def chunks():
        for _ in range(160):
            yield b"x" * 65536

    response = requests.post(live_server.url + "/api/jobs", data=chunks(),
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_large"
    wait_until(lambda: requests.get(live_server.url + "/health", timeout=5).status_code == 200, 10, "web healthy")
