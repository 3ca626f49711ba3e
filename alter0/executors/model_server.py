"""Where an executor's model server is (``executor.base_url``, ``executor.api_key``) and whether it answers.

One setting pair points every executor at a self-hosted model server (vLLM, Ollama, llama.cpp server, a
proxy): the server's root URL, given with or without a trailing ``/v1``, and its key (a secret setting).
Each adapter turns them into what its tool understands -- codex a model provider with the Responses wire
API (``-c`` overrides), claude ``ANTHROPIC_BASE_URL`` / ``ANTHROPIC_API_KEY``, llm the OpenAI client's
``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, openai its own HTTP requests. ``executor.openai.base_url`` is
the openai executor's older name for the same URL, used when ``executor.base_url`` is empty.
"""

from __future__ import annotations

import http.client
from typing import Any, Mapping
from urllib.parse import urlsplit

from ..config import SETTINGS_BY_KEY

#: Seconds the doctor waits for the server's answer.
PROBE_TIMEOUT_SEC = 3.0


def _get(settings: Mapping[str, Any], key: str) -> Any:
    return settings.get(key, SETTINGS_BY_KEY[key].default)


def root_of(url: str) -> str:
    """``url`` without trailing slashes and without a trailing ``/v1``: the server's root."""
    url = (url or "").strip().rstrip("/")
    return url[:-3].rstrip("/") if url.endswith("/v1") else url


def server_root(settings: Mapping[str, Any], executor: str) -> str:
    """The model server's root URL for ``executor``, or "" when the tool's own default is used."""
    root = root_of(_get(settings, "executor.base_url"))
    if not root and executor == "openai":
        root = root_of(_get(settings, "executor.openai.base_url"))
    return root


def api_key(settings: Mapping[str, Any]) -> str:
    """executor.api_key ("" when not set)."""
    return _get(settings, "executor.api_key") or ""


def probe(root: str, key: str = "", timeout: float = PROBE_TIMEOUT_SEC) -> tuple[bool, str]:
    """Ask ``GET {root}/v1/models``: any HTTP answer but a refused key counts as the server answering."""
    url = urlsplit(root)
    if url.scheme not in ("http", "https") or not url.hostname:
        return False, f"{root!r} is not an http(s) URL"
    cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = cls(url.hostname, url.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {key}", "x-api-key": key} if key else {}
    try:
        conn.request("GET", f"{url.path}/v1/models", headers=headers)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, f"model server {root} does not answer ({exc})"
    finally:
        conn.close()
    if status in (401, 403):
        return False, f"model server {root} refuses the key (HTTP {status}); check executor.api_key"
    return True, f"model server {root} answers (HTTP {status})"
