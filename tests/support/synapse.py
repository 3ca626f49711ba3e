"""A real Synapse homeserver for the Matrix channel tests: ``synapse`` (a session fixture) writes a homeserver.yaml
(loopback port, SQLite, a registration shared secret, rate limits off, no federation, no stats), starts
``python -m synapse.app.homeserver`` from its own venv (scripts/ci/install-synapse.sh), waits for
``/_matrix/client/versions`` and registers users through the shared-secret admin API. ``MatrixUser`` is a person
with a Matrix client: create rooms, invite, send (in and out of threads), edit, redact, read what the bot left."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import secrets
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from .helpers import free_port, skip_or_fail, wait_until

VENV = Path(os.environ.get("ALTER0_CACHE") or Path.home() / ".cache" / "alter0") / "synapse-venv"
SERVER_NAME = "localhost"
#: Every rate limit Synapse has, opened wide: the tests send bursts from one user.
OPEN = {"per_second": 10000, "burst_count": 10000}
RATE_LIMITS = {key: OPEN for key in ("rc_message", "rc_registration", "rc_admin_redaction", "rc_3pid_validation",
                                     "rc_presence", "rc_delayed_event_mgmt", "rc_reports", "rc_room_creation")}
RATE_LIMITS.update(rc_login={"address": OPEN, "account": OPEN, "failed_attempts": OPEN},
                   rc_joins={"local": OPEN, "remote": OPEN}, rc_joins_per_room=OPEN,
                   rc_invites={"per_room": OPEN, "per_user": OPEN, "per_issuer": OPEN})


def homeserver_yaml(root: Path, port: int, shared_secret: str) -> str:
    import json  # YAML is a superset of JSON: no YAML library needed here
    config = {
        "server_name": SERVER_NAME, "pid_file": str(root / "homeserver.pid"), "report_stats": False,
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                       "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}],
        "database": {"name": "sqlite3", "args": {"database": str(root / "homeserver.db")}},
        "media_store_path": str(root / "media"), "signing_key_path": str(root / "signing.key"),
        "registration_shared_secret": shared_secret, "enable_registration": False,
        "macaroon_secret_key": secrets.token_hex(16), "form_secret": secrets.token_hex(16),
        "trusted_key_servers": [], "federation_domain_whitelist": [], "suppress_key_server_warning": True,
        "enable_metrics": False, "presence": {"enabled": False}, "url_preview_enabled": False, **RATE_LIMITS}
    return json.dumps(config, indent=1)


class Synapse:
    """One homeserver process on a loopback port, its data in ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.shared_secret = secrets.token_hex(16)
        self.config = root / "homeserver.yaml"
        self.config.write_text(homeserver_yaml(root, self.port, self.shared_secret))
        self.names = itertools.count(1)
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root), "LANG": "C.UTF-8"}  # not our PYTHONPATH
        self.version = ""
        self.proc: subprocess.Popen | None = None

    def _python(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV / "bin" / "python"), *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, **kwargs)

    def start(self) -> "Synapse":
        keys = self._python("-m", "synapse.app.homeserver", "-c", str(self.config), "--generate-keys", timeout=120)
        assert keys.returncode == 0, keys.stderr[-3000:]
        with open(self.root / "synapse.log", "ab") as log:
            self.proc = subprocess.Popen([str(VENV / "bin" / "python"), "-m", "synapse.app.homeserver", "-c",
                                          str(self.config)], cwd=self.root, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: self.proc.poll() is not None or self._up(), 120, self.log)
        assert self.proc.poll() is None, self.log()
        self.version = httpx.get(f"{self.url}/_matrix/client/versions").json()["versions"][-1]
        return self

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/_matrix/client/versions", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        path = self.root / "synapse.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def register(self, name: str, admin: bool = False) -> "MatrixUser":
        """A new user ``@<name><n>:localhost`` (unique per call) through the shared-secret admin API."""
        username, password = f"{name}{next(self.names)}{uuid.uuid4().hex[:4]}", secrets.token_hex(8)
        nonce = httpx.get(f"{self.url}/_synapse/admin/v1/register").json()["nonce"]
        mac = hmac.new(self.shared_secret.encode(), b"\x00".join(
            [nonce.encode(), username.encode(), password.encode(), b"admin" if admin else b"notadmin"]),
            hashlib.sha1).hexdigest()
        resp = httpx.post(f"{self.url}/_synapse/admin/v1/register", json={
            "nonce": nonce, "username": username, "password": password, "mac": mac, "admin": admin})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return MatrixUser(self.url, body["user_id"], body["access_token"], password)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class MatrixUser:
    """A person with a Matrix client (the client-server API over httpx)."""

    def __init__(self, url: str, user_id: str, token: str, password: str):
        self.url, self.user_id, self.token, self.password = url, user_id, token, password
        self.http = httpx.Client(base_url=f"{url}/_matrix/client/v3", timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})

    def _ok(self, resp: httpx.Response) -> dict:
        assert resp.status_code == 200, f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text}"
        return resp.json()

    def create_room(self, invite: list[str] = ()) -> str:
        return self._ok(self.http.post("/createRoom", json={"preset": "private_chat", "invite": list(invite)}))[
            "room_id"]

    def invite(self, room: str, user: str) -> None:
        self._ok(self.http.post(f"/rooms/{room}/invite", json={"user_id": user}))

    def join(self, room: str) -> None:
        self._ok(self.http.post(f"/rooms/{room}/join", json={}))

    def members(self, room: str) -> dict[str, str]:
        """user id -> membership (join, invite, leave) in ``room``."""
        state = self._ok(self.http.get(f"/rooms/{room}/members"))["chunk"]
        return {e["state_key"]: e["content"]["membership"] for e in state}

    def send(self, room: str, text: str | None = None, thread: str | None = None, **content) -> str:
        """Send a message (``text``, or a raw content such as an image) into ``room``, in ``thread`` if given."""
        body = dict({"msgtype": "m.text", "body": text} if text is not None else {}, **content)
        if thread:
            body["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread, "is_falling_back": True,
                                    "m.in_reply_to": {"event_id": thread}}
        return self._ok(self.http.put(f"/rooms/{room}/send/m.room.message/{uuid.uuid4().hex}", json=body))[
            "event_id"]

    def edit(self, room: str, event_id: str, text: str) -> str:
        return self.send(room, None, msgtype="m.text", body=f"* {text}", **{
            "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}})

    def redact(self, room: str, event_id: str) -> str:
        return self._ok(self.http.put(f"/rooms/{room}/redact/{event_id}/{uuid.uuid4().hex}", json={}))["event_id"]

    def events(self, room: str) -> list[dict]:
        """Every event of ``room`` the user can see, oldest first."""
        out, token = [], None
        while True:
            params = {"dir": "b", "limit": 500, **({"from": token} if token else {})}
            page = self._ok(self.http.get(f"/rooms/{room}/messages", params=params))
            out += page.get("chunk", [])
            token = page.get("end")
            if not page.get("chunk") or not token:
                return list(reversed(out))

    def bot_messages(self, room: str, bot: str) -> list[dict]:
        """What ``bot`` left in ``room`` as a person sees it: each message with its edits applied (``body``,
        ``formatted_body``, ``thread``: the thread root or None, ``edits``: how many)."""
        events = [e for e in self.events(room) if e["type"] == "m.room.message" and e["sender"] == bot]
        shown: dict[str, dict] = {}
        for e in events:
            c, rel = e["content"], e["content"].get("m.relates_to") or {}
            if rel.get("rel_type") == "m.replace" and rel.get("event_id") in shown:
                target = shown[rel["event_id"]]
                target.update({k: v for k, v in c["m.new_content"].items() if k != "m.relates_to"})
                target["edits"] += 1
            else:
                shown[e["event_id"]] = dict(c, event_id=e["event_id"], edits=0,
                                            thread=rel.get("event_id") if rel.get("rel_type") == "m.thread" else None)
        return list(shown.values())


@pytest.fixture(scope="session")
def synapse(tmp_path_factory):
    """One Synapse for the session (each test registers its own bot and users)."""
    if not (VENV / "bin" / "python").exists():
        skip_or_fail(f"Synapse is not installed in {VENV} (run scripts/ci/install-synapse.sh)")
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    try:
        yield server.start()
    finally:
        server.stop()


def channel_config(server: Synapse, bot: MatrixUser, allowed: list[str], **matrix) -> dict:
    """An install's ``channels`` section pointing the Matrix channel at ``server`` as ``bot`` (its access token comes
    from the environment, as a secret should: see ``start_channel``)."""
    return {"channels": {"enabled": ["matrix"], "matrix": {
        "homeserver": server.url, "user_id": bot.user_id, "allowed_users": allowed, "poll_timeout_sec": 1,
        **matrix}, "delivery": {"max_delay_sec": 2}}}


def start_channel(env, bot: MatrixUser, name: str = "matrix", password: bool = False):
    """Run the real ``alter0 channel matrix`` process of ``env`` until its first /sync is saved; logged in with the
    bot's access token, or with its password."""
    from .helpers import BIN
    from alter0.models import ChannelState
    env.env["ALTER0_MATRIX_PASSWORD" if password else "ALTER0_MATRIX_TOKEN"] = bot.password if password else bot.token
    before = ChannelState.get_or_none(ChannelState.platform == "matrix")
    polls = before.last_poll_at if before else None
    proc = env.spawn([str(BIN / "alter0"), "channel", "matrix"], f"{name}-{len(env.procs)}")

    def synced():
        row = ChannelState.get_or_none(ChannelState.platform == "matrix")
        return proc.poll() is not None or (row is not None and row.cursor and row.last_poll_at != polls)
    wait_until(synced, 60, env.logs)
    assert proc.poll() is None, env.logs()
    return proc
