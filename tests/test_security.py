"""Trust boundaries, attacked as the probes of issue 13 did: a real gunicorn and a real worker on a temp install.

Cross-site posts, foreign Origin and Host, an admin claimed by name (HTTP and console), secrets through every
view of the config, an agent reporting a session id shaped like an option, a crafted restore archive. Each is
refused with a clear 4xx or error line, and nothing runs.
"""

from __future__ import annotations

import json
import re
import tarfile
import time

import pytest
import requests

from alter0.config import SETTINGS, load_config
from alter0 import archive
from alter0.ops.verify import schema_version_of
from support.install import agent_bin
from support.web import start_gunicorn

EVIL = "http://evil.example"
BODY = {"content": "run this [[reply:pwned]]", "user_id": "mallory"}
PLANTED = {"executor": {"env": {"ANTHROPIC_API_KEY": "sk-PLANTED-anthropic"}},
           "runtime": {"queue": {"broker_url": "redis://:PLANTED-broker@127.0.0.1:6379/0"}}}
SHARED = "PLANTED-shared-admin-token"


def audit_lines(env) -> list[dict]:
    return [json.loads(line) for p in sorted((env.output / "audit").glob("*/command_permission.jsonl"))
            for line in p.read_text().splitlines()]


def error_of(r, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["code"]
    return err


def nothing_ran(server) -> None:
    assert requests.get(server.url + "/api/jobs", timeout=10).json()["jobs"] == []
    assert server.env.agent_runs() == []


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def console(url: str, token: str | None = None) -> tuple[requests.Session, str]:
    """A browser session on the console (logged in with ``token`` if given) and its CSRF token."""
    s = requests.Session()
    if token:
        login = s.get(url + "/login", timeout=10).text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', login).group(1)
        s.post(url + "/login", data={"csrf_token": csrf, "token": token}, timeout=10)
    page = s.get(url + "/", timeout=10).text
    return s, re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


# --- cross-site posts, Origin, Host (tokenless loopback) ----------------------------------------------

def test_cross_site_posts_are_refused_and_nothing_runs(live_server):
    url, text = live_server.url, json.dumps(BODY)
    attacks = [  # (path, requests kwargs, status, code)
        ("/api/jobs", {"data": text, "headers": {"Content-Type": "text/plain", "Origin": EVIL}}, 403,
         "forbidden_origin"),
        ("/api/jobs", {"data": text, "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        ("/api/message", {"data": text, "headers": {"Content-Type": "text/plain;charset=UTF-8"}}, 415,
         "unsupported_media_type"),
        ("/api/jobs", {"data": {"content": "x", "user_id": "u"}}, 415, "unsupported_media_type"),
        ("/api/jobs", {"json": BODY, "headers": {"Origin": EVIL}}, 403, "forbidden_origin"),
        ("/api/jobs", {"json": BODY, "headers": {"Origin": "null"}}, 403, "forbidden_origin"),
        ("/api/command", {"data": json.dumps({"command": "/task new x", "user_id": "u"}),
                          "headers": {"Content-Type": "text/plain", "Origin": EVIL}}, 403, "forbidden_origin"),
        ("/api/command", {"data": json.dumps({"command": "/task new x", "user_id": "u"}),
                          "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        ("/api/jobs", {"json": BODY, "headers": {"Host": f"evil.example:{live_server.port}"}}, 403,
         "forbidden_host"),
    ]
    for path, kwargs, status, code in attacks:
        r = requests.post(url + path, timeout=10, **kwargs)
        assert error_of(r, status)["code"] == code, (path, kwargs)
    nothing_ran(live_server)
    assert requests.get(url + "/api/tasks", timeout=10).json()["tasks"] == []
    refused = [a for a in audit_lines(live_server.env) if a["event"] == "refused"]
    assert len(refused) == len(attacks)
    assert all(a["allowed"] is False and a["source"] == "127.0.0.1" and a["command"].startswith("POST /api/")
               for a in refused)
    # the server's own page (same Origin) still gets through
    ok = requests.post(url + "/api/message", json={"content": "hi [[reply:fine]]", "user_id": "u"},
                       headers={"Origin": url}, timeout=60)
    assert ok.status_code == 200 and ok.json()["response"] == "fine"


def test_a_foreign_host_is_refused_on_every_page(live_server):
    port = live_server.port
    for path in ("/", "/jobs", "/api/status", "/api/jobs"):
        r = requests.get(live_server.url + path, headers={"Host": f"rebind.evil.example:{port}"}, timeout=10)
        assert r.status_code == 403 and "DNS rebinding" in r.text, (path, r.text[:300])
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"app.localhost:{port}"):
        assert requests.get(live_server.url + "/api/status", headers={"Host": host}, timeout=10).status_code == 200


# --- admin by name ------------------------------------------------------------------------------------

def test_an_admin_claimed_by_name_is_refused_over_http_and_in_the_console(live_server):
    env, url = live_server.env, live_server.url
    before = env.config_path.read_text()
    for command in ("/executor command", '/config set executor.command ["/bin/sh","-c","touch /tmp/pwned"]'):
        err = error_of(requests.post(url + "/api/command", json={"command": command, "user_id": "admin"},
                                     timeout=10), 403)
        assert "alter0 token create --user YOU --admin" in err["message"]
    # the console's "You are" picker sets a name, never admin rights
    s, csrf = console(url)
    s.post(url + "/user", data={"csrf_token": csrf, "user_id": "admin"}, timeout=10)
    r = s.post(url + "/", data={"csrf_token": csrf, "content": "/executor command"}, timeout=10)
    assert r.status_code == 403 and "admin token" in r.text
    # the admin list is not for non-admins, nor the audit
    assert error_of(requests.post(url + "/api/command", json={"command": "/config get security.admin_user_ids",
                                                              "user_id": "admin"}, timeout=10), 403)
    assert requests.get(url + "/api/status", timeout=10).json()["audit_tail"] is None
    assert env.config_path.read_text() == before
    attempts = [(a["user_id"], a["source"].split()[0], a["allowed"]) for a in audit_lines(env)]
    assert attempts == [("admin", "http", False), ("admin", "http", False), ("admin", "console", False)]


# --- tokens -------------------------------------------------------------------------------------------

def test_user_tokens_act_only_as_their_user_and_admin_tokens_as_anyone(make_env):
    env = make_env(web={"sync_timeout_sec": 30})
    bob = json.loads(env.cli("token", "create", "--user", "bob", "--json").stdout)["token"]
    root = env.cli("token", "create", "--user", "root", "--admin", "--expires", "1d").stdout.strip()
    gone = json.loads(env.cli("token", "create", "--user", "eve", "--json").stdout)
    env.cli("token", "revoke", str(gone["id"]))
    env.start_worker()
    server = start_gunicorn(env)
    url = server.url
    # no token, a revoked one or an unknown one: 401
    for headers in ({}, bearer(gone["token"]), bearer("a0_guess")):
        error_of(requests.post(url + "/api/jobs", json=BODY, headers=headers, timeout=10), 401)
    assert requests.get(url + "/", allow_redirects=False, timeout=10).status_code == 302  # to /login
    # a user token acts as its user only, and is no admin
    assert "'bob' only" in error_of(requests.post(url + "/api/jobs", json=BODY, headers=bearer(bob), timeout=10),
                                    403)["message"]
    err = error_of(requests.post(url + "/api/command", json={"command": "/executor command"}, headers=bearer(bob),
                                 timeout=10), 403)
    assert "'bob' is not an admin" in err["message"]
    mine = requests.post(url + "/api/message", json={"content": "mine [[reply:ok]]"}, headers=bearer(bob), timeout=60)
    assert mine.status_code == 200
    assert requests.get(url + "/api/status", headers=bearer(bob), timeout=10).json()["audit_tail"] is None
    # the admin token may act as anyone, sees the audit, and is still held to Host and Origin
    ok = requests.post(url + "/api/command", json={"command": "/executor", "user_id": "carol"}, headers=bearer(root),
                       timeout=10)
    assert ok.status_code == 200, ok.text
    tail = requests.get(url + "/api/status", headers=bearer(root), timeout=10).json()["audit_tail"]
    events = [a["event"] for a in tail]
    assert {"token.create", "token.revoke", "refused", "admin_command"} <= set(events)
    assert any(a["event"] == "refused" and a["user_id"] == "bob" and "'mallory'" in a["command"] for a in tail)
    assert not any(bob in json.dumps(a) or root in json.dumps(a) for a in tail)
    # a user token sees and touches its user's jobs and tasks only
    carol = requests.post(url + "/api/jobs", json={"content": "carol's [[reply:c]]", "user_id": "carol"},
                          headers=bearer(root), timeout=10).json()["job_id"]
    assert [j["user_id"] for j in requests.get(url + "/api/jobs", headers=bearer(bob), timeout=10).json()["jobs"]] \
        == ["bob"]
    for method, path in (("get", f"/api/jobs/{carol}"), ("post", f"/api/jobs/{carol}/cancel")):
        error_of(requests.request(method, url + path, headers=bearer(bob), timeout=10), 404)
    assert len(requests.get(url + "/api/jobs", headers=bearer(root), timeout=10).json()["jobs"]) == 2
    error_of(requests.post(url + "/api/jobs", json=BODY, headers={**bearer(root), "Origin": EVIL}, timeout=10), 403)
    error_of(requests.get(url + "/api/status", headers={**bearer(root), "Host": "evil.example"}, timeout=10), 403)
    # the console: log in with a token; no "You are" picker, the user is the token's
    wrong, _ = console(url, "a0_wrong")
    assert wrong.get(url + "/", allow_redirects=False, timeout=10).status_code == 302
    assert "console login" in audit_lines(env)[-1]["command"]
    s, csrf = console(url, bob)
    page = s.get(url + "/", timeout=10).text
    assert "You are <strong>bob</strong>" in page and 'name="user_id"' not in page
    assert s.post(url + "/user", data={"csrf_token": csrf, "user_id": "root"}, timeout=10).status_code == 403
    assert s.post(url + "/", data={"csrf_token": csrf, "content": "/executor command"}, timeout=10).status_code == 403
    assert "executor.name" not in env.config_path.read_text() or json.loads(env.config_path.read_text())[
        "executor"]["name"] == "command"


def test_token_expiry_and_listing(app):
    from alter0.principals import authenticate, create_token, list_tokens, parse_expiry
    _, live = create_token("ann", expires_at=parse_expiry("1h"))
    _, old = create_token("ann", expires_at=time.time() - 1)
    cfg = app.rt.cfg
    assert authenticate(live, cfg).user_id == "ann" and authenticate(old, cfg) is None
    assert [t["state"] for t in list_tokens(include_dead=True)] == ["live", "expired"]
    assert all(live not in json.dumps(t) for t in list_tokens(include_dead=True))
    assert parse_expiry("2w", 0) == 14 * 86400 and parse_expiry("never") is None
    with pytest.raises(Exception, match="duration"):
        parse_expiry("tomorrow")


# --- secrets ------------------------------------------------------------------------------------------

def test_no_view_of_the_config_shows_a_secret(make_env, tmp_path):
    env = make_env(security={"api_token": SHARED}, web={"sync_timeout_sec": 30}, **PLANTED)
    bob = env.cli("token", "create", "--user", "bob").stdout.strip()
    env.start_worker()
    server = start_gunicorn(env)
    url, seen = server.url, {}
    secret_keys = [s.key for s in SETTINGS if s.secret]
    assert {"executor.env", "runtime.db.url", "runtime.queue.broker_url", "security.api_token"} <= set(secret_keys)
    # over HTTP, as a user and as the admin: /config, /config get KEY, /api/status, the console
    for who, token in (("bob", bob), ("admin", SHARED)):
        for command in ["/config", *(f"/config get {k}" for k in secret_keys)]:
            r = requests.post(url + "/api/command", json={"command": command}, headers=bearer(token), timeout=10)
            assert r.status_code == 200, r.text
            seen[f"{who} {command}"] = r.text
        seen[f"{who} /api/status"] = requests.get(url + "/api/status", headers=bearer(token), timeout=10).text
        s, csrf = console(url, token)
        seen[f"{who} console /status"] = s.get(url + "/status", timeout=10).text
        seen[f"{who} console /config"] = s.post(url + "/", data={"csrf_token": csrf, "content": "/config"},
                                                timeout=10).text
    assert "sk-***" not in seen["bob /config get executor.env"] and '"***"' in seen["bob /config get executor.env"]
    # the CLI, with a database URL planted in the environment too
    env.env["DATABASE_URL"] = "postgresql://alter0:PLANTED-db@127.0.0.1:9/alter0"
    for args in (("config",), ("config", "--json"), ("config", "runtime.db.url")):
        seen["alter0 " + " ".join(args)] = env.cli(*args).stdout
    del env.env["DATABASE_URL"]
    for command in ("/config", "/config get executor.env",
                    "/config set security.api_token PLANTED-new-token",
                    '/config set executor.env \'{"OPENAI_API_KEY":"PLANTED-new-key"}\''):
        result = env.cli("send", command)
        seen[f"alter0 send {command}"] = result.stdout + result.stderr
    # error messages about a secret setting
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"executor": {"env": {"ANTHROPIC_API_KEY": ["PLANTED-in-a-list"]}}}))
    bad = env.cli("--config", str(broken), "config", check=False)
    assert bad.returncode != 0 and "executor.env = ***" in bad.stderr
    seen["error"] = bad.stderr
    # the backup's manifest
    backup = env.cli("backup")
    seen["backup"] = backup.stdout + backup.stderr
    with tarfile.open(sorted((env.output / "backups").glob("*.tar.gz"))[-1]) as tar:
        seen["manifest"] = tar.extractfile(archive.MANIFEST).read().decode()
    # logs and the audit
    env.stop_all()
    for path in [*env.output.glob("logs/**/*"), *env.output.glob("audit/**/*"), *env.tmp.glob("*.log")]:
        if path.is_file():
            seen[str(path)] = path.read_text(errors="replace")
    leaks = {view: text for view, text in seen.items() if "PLANTED" in text or bob in text}
    assert not leaks, f"secrets shown in: {sorted(leaks)}"


# --- agent session ids --------------------------------------------------------------------------------

def test_an_agent_session_id_shaped_like_an_option_never_reaches_argv(make_env):
    env = make_env(executor={"name": "codex"}, web={"sync_timeout_sec": 30})
    calls = agent_bin(env, "codex")
    env.env["FAKE_AGENT_SESSION_ID"] = "--sandbox=danger-full-access"
    env.start_worker()
    server = start_gunicorn(env)
    first = requests.post(server.url + "/api/message", json={"content": "first", "user_id": "u"}, timeout=60).json()
    assert first["status"] == "done"
    job = requests.get(f"{server.url}/api/jobs/{first['job_id']}?events=1", timeout=10).json()
    refused = [e for e in job["events"] if e["kind"] == "executor.session_refused"]
    assert refused and "does not have the shape" in refused[0]["data"]["message"]
    task = requests.get(f"{server.url}/api/tasks/{first['task_id']}", timeout=10).json()
    assert task["session_id"] is None
    second = requests.post(server.url + "/api/message", json={
        "content": "--sandbox=danger-full-access -c x", "user_id": "u", "task_id": first["task_id"]}, timeout=60)
    assert second.json()["status"] == "done"
    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(runs) == 2
    for run in runs:
        assert "--sandbox=danger-full-access" not in run["argv"] and "resume" not in run["argv"]
        assert run["argv"][-1] == "-" and run["argv"][run["argv"].index("--sandbox") + 1] == "read-only"
    assert runs[1]["stdin"].rstrip().endswith("--sandbox=danger-full-access -c x")  # the prompt: stdin only


def test_a_stored_session_id_of_the_wrong_shape_starts_a_fresh_session(tmp_path):
    from alter0.executors.base import ExecRequest
    from alter0.executors.claude import ClaudeExecutor
    from alter0.executors.codex import CodexExecutor
    events = []
    req = ExecRequest(prompt="-p", session_id="--dangerously-skip-permissions", workdir=tmp_path, timeout=5,
                      on_event=lambda kind, data: events.append(kind))
    assert not any(a.startswith("--resume") for a in ClaudeExecutor({}).argv(req))
    assert "resume" not in CodexExecutor({}).argv(req)
    assert events == ["executor.session_refused"] * 2
    good = ExecRequest(prompt="x", session_id="0199a213-81c0-7800-8aa1-bbab2a035a53", workdir=tmp_path, timeout=5)
    assert CodexExecutor({}).argv(good)[-3:] == ["resume", good.session_id, "-"]


# --- restore --with-config ----------------------------------------------------------------------------

def test_a_crafted_restore_archive_cannot_silently_change_the_executor(make_env, tmp_path):
    env = make_env()
    env.cli("task", "list")  # creates the database
    pwned = tmp_path / "pwned"
    evil = json.loads(env.config_path.read_text())
    evil["executor"]["command"] = ["/bin/sh", "-c", f"touch {pwned}"]
    (tmp_path / "config.json").write_text(json.dumps(evil))
    db = tmp_path / "alter0.db"
    archive.snapshot_sqlite(env.output / "db" / "alter0.db", db)
    crafted = tmp_path / "alter0-backup-crafted.tar.gz"
    archive.write_archive(crafted, {archive.DB_MEMBER: db, archive.CONFIG_MEMBER: tmp_path / "config.json"},
                          {"schema_version": schema_version_of(db), "created_at": time.time(),
                           "output_dir": str(env.output)})
    before = env.config_path.read_text()
    refused = env.cli("restore", str(crafted), "--with-config", check=False)
    assert refused.returncode != 0, refused.stdout
    assert refused.stderr.startswith("alter0: restore --with-config refused") and len(refused.stderr.splitlines()) == 1
    assert "executor.command" in refused.stderr and f"touch {pwned}" in refused.stderr and "--yes" in refused.stderr
    assert env.config_path.read_text() == before and not pwned.exists()
    assert not list((env.output / "backups").glob("replaced-*"))  # nothing was restored
    applied = env.cli("restore", str(crafted), "--with-config", "--yes")
    assert "restored" in applied.stdout
    assert load_config(env.config_path, env={})["executor.command"][0] == "/bin/sh" and not pwned.exists()


# --- the rules themselves -----------------------------------------------------------------------------

@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:8080", True), ("[::1]:8080", True), ("10.0.0.5", True), ("localhost:8080", True),
    ("app.localhost", True), ("alter0.example.com", True), ("ALTER0.example.com:443", True),
    ("evil.example", False), ("localhost.evil.example", False), ("", False), ("127.0.0.1.nip.io", False)])
def test_host_allow_list(host, allowed):
    from web.guard import host_allowed
    assert host_allowed(host, "127.0.0.1", ["alter0.example.com"]) is allowed
    assert host_allowed(host, "127.0.0.1", ["*"]) is bool(host)


def test_origin_is_the_servers_own_or_listed():
    from web.guard import origin_allowed
    assert origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080", [])
    assert origin_allowed("https://alter0.example.com/", "alter0.example.com", [])
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8080", [])
    assert not origin_allowed("null", "127.0.0.1:8080", [])
    assert origin_allowed("https://ci.example", "127.0.0.1:8080", ["https://ci.example"])


def test_secrets_are_masked_by_shape():
    from alter0.config import SETTINGS_BY_KEY
    from alter0.secrets import masked
    assert masked(SETTINGS_BY_KEY["runtime.db.url"], "postgresql://a0:pw@db:5432/a0?sslpassword=x") == \
        "postgresql://a0:***@db:5432/a0?***"
    assert masked(SETTINGS_BY_KEY["executor.env"], {"KEY": "v", "PATH": "/bin"}) == {"KEY": "***", "PATH": "***"}
    assert masked(SETTINGS_BY_KEY["security.api_token"], "t") == "***"
    assert masked(SETTINGS_BY_KEY["security.api_token"], "") == ""
    assert masked(SETTINGS_BY_KEY["executor.name"], "codex") == "codex"
