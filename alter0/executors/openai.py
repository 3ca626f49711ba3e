"""An OpenAI-compatible chat server (OpenAI, Ollama, llama.cpp, vLLM): streaming /v1/chat/completions.

Stdlib only. The request runs in a thread; the caller's thread watches the deadline and the cancel
event and closes the socket to stop it. HTTP 429 -> rate_limited, 5xx and connection failures ->
transient, 401/403 -> auth, other 4xx -> exit_error.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ..config import SETTINGS_BY_KEY
from ..errors import ExecutorError
from . import model_server
from .base import ExecRequest, ExecResult, Executor
from .process import POLL_SEC


def parse_sse(lines) -> tuple[str, dict[str, Any]]:
    """Reply text and usage from the ``data:`` lines of a chat completion stream."""
    parts: list[str] = []
    usage: dict[str, Any] = {}
    for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or choice.get("message") or {}).get("content")
            if isinstance(content, str):
                parts.append(content)
        if chunk.get("usage"):
            usage = usage_of(chunk["usage"])
    return "".join(parts), usage


def usage_of(usage: dict) -> dict[str, Any]:
    """input_tokens / output_tokens from an OpenAI usage object."""
    out = {}
    if isinstance(usage.get("prompt_tokens"), int):
        out["input_tokens"] = usage["prompt_tokens"]
    if isinstance(usage.get("completion_tokens"), int):
        out["output_tokens"] = usage["completion_tokens"]
    return out


def http_error(status: int, body: bytes) -> ExecutorError:
    """The ExecutorError for an HTTP error status and its JSON body."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace").strip()[:500] or http.client.responses.get(status, "")
    if status in (401, 403):
        kind = "auth"
    elif status == 429:
        kind = "rate_limited"
    elif status >= 500:
        kind = "transient"
    else:
        kind = "exit_error"
    return ExecutorError(kind, f"model server answered HTTP {status}: {message}")


class OpenAIExecutor(Executor):
    """Chat completions against executor.base_url (or executor.openai.base_url) with executor.model."""

    name = "openai"
    keeps_session = False

    def setting(self, key: str) -> Any:
        """A setting's value, or its default."""
        return self.settings.get(key, SETTINGS_BY_KEY[key].default)

    def api_key(self) -> str | None:
        """executor.api_key, else the variable named by executor.openai.api_key_env (executor.env, then os.environ)."""
        name = self.setting("executor.openai.api_key_env")
        return (model_server.api_key(self.settings) or (self.setting("executor.env") or {}).get(name)
                or os.environ.get(name))

    def base_url(self) -> str:
        """executor.base_url, else executor.openai.base_url, as a server root."""
        return model_server.server_root(self.settings, self.name)

    def available(self) -> tuple[bool, str]:
        """Whether a TCP connection to the server opens within half a second."""
        url = urlsplit(self.base_url())
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), 0.5).close()
            return True, self.base_url()
        except (OSError, TypeError) as exc:
            return False, f"{self.base_url()} unreachable: {exc}"

    def run(self, req: ExecRequest) -> ExecResult:
        """Send the prompt as one user message and stream the reply."""
        url = urlsplit(self.base_url())
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(url.hostname, url.port, timeout=req.timeout + 1.0)  # the loop below decides first
        outcome: dict[str, Any] = {}
        worker = threading.Thread(target=self._request, args=(conn, url.path, req, outcome), daemon=True)
        worker.start()
        deadline = time.monotonic() + req.timeout
        while worker.is_alive():
            if req.cancel.is_set() or time.monotonic() >= deadline:
                _close(conn)
                worker.join(2.0)
                if req.cancel.is_set():
                    raise ExecutorError("cancelled", "request to the model server cancelled")
                raise ExecutorError("timeout", f"model server did not answer within {req.timeout:g} s")
            worker.join(POLL_SEC)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def _request(self, conn: http.client.HTTPConnection, path: str, req: ExecRequest, outcome: dict) -> None:
        body = {"model": self.setting("executor.model") or "default", "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": req.prompt}]}
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key():
            headers["Authorization"] = f"Bearer {self.api_key()}"
        try:
            conn.request("POST", f"{path}/v1/chat/completions", json.dumps(body).encode(), headers)
            resp = conn.getresponse()
            if resp.status != 200:
                outcome["error"] = http_error(resp.status, resp.read())
                return
            if "event-stream" in resp.getheader("Content-Type", ""):
                text, usage = parse_sse(iter(resp.readline, b""))
            else:
                text, usage = _parse_whole(resp.read())
            if not text.strip():
                outcome["error"] = ExecutorError("bad_output", "model server returned an empty reply")
                return
            outcome["result"] = ExecResult(text=text, usage=usage)
        except ExecutorError as exc:
            outcome["error"] = exc
        except TimeoutError:
            outcome["error"] = ExecutorError("timeout", f"model server did not answer within {req.timeout:g} s")
        except (OSError, http.client.HTTPException) as exc:
            outcome["error"] = ExecutorError("transient", f"model server unreachable or connection lost: {exc}")
        finally:
            conn.close()


def _parse_whole(body: bytes) -> tuple[str, dict[str, Any]]:
    try:
        data = json.loads(body)
        return data["choices"][0]["message"]["content"] or "", usage_of(data.get("usage") or {})
    except (ValueError, KeyError, IndexError, TypeError):
        raise ExecutorError("bad_output", "model server sent neither a stream nor a chat completion") from None


def _close(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    conn.close()
