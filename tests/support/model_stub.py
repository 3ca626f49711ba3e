"""A local imitation of the model APIs the real agent CLIs call, for offline tests.

One stdlib HTTP server, one port, two APIs:

* ``POST /v1/responses`` (or ``/responses``) -- the OpenAI Responses API that ``codex`` streams from;
* ``POST /v1/messages`` -- the Anthropic Messages API that ``claude`` streams from (``HEAD /`` too).

Every reply is ``FAKE-REPLY n=<request no> api=<api> user_turns=<k> tail='<end of the last user text>'``
so a test can see what arrived. ``stub.requests`` logs each request (api, status, mode, user texts), so
a resumed turn can be seen carrying the earlier turn. Modes (``set_mode(mode, times=None)``; ``times``
= only the next N model requests, then back to ``ok``):

* ``ok``; ``401`` (auth error, ``x-should-retry: false``); ``429`` (rate limit); ``529`` (overloaded);
* ``hang`` (read the request, never answer); ``drop`` (send the start of the stream, then reset);
* ``tool``: ask the agent to run ``stub.tool_command`` (default ``sleep 600``) with its shell tool
  (codex ``exec_command``, claude ``Bash``), so a test can see the agent's own children.

Use it in-process (``with ModelStub() as stub: stub.url``) or run it:
``python -m tests.support.model_stub --port 18080 [--mode ok] [--log requests.jsonl]``; a running stub
also takes ``POST /_stub/mode {"mode": "429", "times": 1}`` and answers ``GET /_stub/requests``.
Point an alter0 executor at it with ``executor.base_url = stub.url`` (and any ``executor.api_key``): the
adapters configure codex and claude from those two settings alone.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODES = ("ok", "401", "429", "529", "hang", "drop", "tool")
ERRORS = {  # mode -> (status, openai-style body, anthropic-style body)
    "401": (401, {"error": {"message": "invalid x-api-key (model stub)", "type": "invalid_request_error",
                            "code": "invalid_api_key"}},
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
    "429": (429, {"error": {"message": "Rate limit reached (model stub)", "type": "rate_limit_error",
                            "code": "rate_limit_exceeded"}},
            {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited (model stub)"}}),
    "529": (529, {"error": {"message": "Overloaded (model stub)", "type": "server_error", "code": "overloaded"}},
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
}


def user_texts(api: str, body: dict) -> list[str]:
    """The text of every user message in a request body, oldest first."""
    texts = []
    items = body.get("input") if api == "responses" else body.get("messages")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        content = item.get("content")
        blocks = [{"text": content}] if isinstance(content, str) else content or []
        parts = [b.get("text", "") for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)]
        if parts:
            texts.append(parts[-1])
    return texts


def reply_text(n: int, api: str, texts: list[str]) -> str:
    """The canned reply: request number, API, how many typed user turns arrived, the end of the last one."""
    typed = [t for t in texts if not t.lstrip().startswith("<")]  # skip injected <environment_context> etc.
    last = typed[-1].strip() if typed else ""
    return f"FAKE-REPLY n={n} api={api} user_turns={len(typed)} tail={last[-60:]!r}"


def sse(event: str, data: dict) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def responses_stream(text: str, usage_in: int) -> list[bytes]:
    """OpenAI Responses API events of one assistant message."""
    rid, mid = f"resp_{uuid.uuid4().hex[:12]}", f"msg_{uuid.uuid4().hex[:12]}"
    item = {"type": "message", "role": "assistant", "id": mid, "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    usage = {"input_tokens": usage_in, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": len(text) // 4, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": usage_in + len(text) // 4}
    return [sse("response.created", {"type": "response.created", "response": {"id": rid}}),
            sse("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                               "item": {**item, "status": "in_progress", "content": []}}),
            sse("response.output_text.delta", {"type": "response.output_text.delta", "item_id": mid,
                                               "output_index": 0, "content_index": 0, "delta": text}),
            sse("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            sse("response.completed", {"type": "response.completed", "response": {"id": rid, "usage": usage}})]


def responses_tool_call(command: str) -> list[bytes]:
    """OpenAI Responses API events of one ``exec_command`` function call."""
    rid = f"resp_{uuid.uuid4().hex[:12]}"
    item = {"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:12]}", "call_id": f"call_{uuid.uuid4().hex[:12]}",
            "name": "exec_command", "arguments": json.dumps({"cmd": command}), "status": "completed"}
    usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
    return [sse("response.created", {"type": "response.created", "response": {"id": rid}}),
            sse("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            sse("response.completed", {"type": "response.completed", "response": {"id": rid, "usage": usage}})]


def messages_tool_call(command: str, model: str) -> list[bytes]:
    """Anthropic Messages API events of one ``Bash`` tool use."""
    message = {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 1, "output_tokens": 1}}
    block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}", "name": "Bash", "input": {}}
    return [sse("message_start", {"type": "message_start", "message": message}),
            sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps({"command": command})}}),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                  "usage": {"output_tokens": 1}}),
            sse("message_stop", {"type": "message_stop"})]


def messages_stream(text: str, model: str, usage_in: int) -> list[bytes]:
    """Anthropic Messages API events of one text reply."""
    message = {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": usage_in, "output_tokens": 1}}
    return [sse("message_start", {"type": "message_start", "message": message}),
            sse("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}}),
            sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": text}}),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": len(text) // 4}}),
            sse("message_stop", {"type": "message_stop"})]


class ModelStub:
    """The server: ``start()``/``stop()`` or a context manager; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: str | Path | None = None):
        self.requests: list[dict[str, Any]] = []
        self.log_path = Path(log_path) if log_path else None
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._mode, self._times = "ok", None
        self.tool_command = "sleep 600"
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def set_mode(self, mode: str, times: int | None = None) -> None:
        """Answer the next ``times`` model requests (all when None) in ``mode``."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        with self._lock:
            self._mode, self._times = mode, times

    def next_mode(self) -> str:
        """The mode of the request being answered (counts down ``times``)."""
        with self._lock:
            mode = self._mode
            if self._times is not None:
                self._times -= 1
                if self._times <= 0:
                    self._mode, self._times = "ok", None
            return mode

    def record(self, entry: dict[str, Any]) -> None:
        """Append to the request log (and the log file)."""
        with self._lock:
            self.requests.append(entry)
            if self.log_path:
                with self.log_path.open("a") as f:
                    f.write(json.dumps(entry) + "\n")

    def model_requests(self, api: str | None = None) -> list[dict[str, Any]]:
        """Logged requests to the model endpoints (of one API when given)."""
        return [r for r in self.requests if r.get("api") and (api is None or r["api"] == api)]

    def start(self) -> "ModelStub":
        threading.Thread(target=self.server.serve_forever, daemon=True, name="model-stub").start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "ModelStub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(stub: ModelStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:  # noqa: N802 -- claude checks reachability first
            self._send(200, b"", "text/plain")

        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/_stub/requests"):
                self._send(200, json.dumps(stub.requests).encode())
            else:
                self._send(404, b'{"error": {"message": "not found"}}')

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0]
            if path == "/_stub/mode":
                data = json.loads(raw or b"{}")
                stub.set_mode(data.get("mode", "ok"), data.get("times"))
                return self._send(200, b'{"ok": true}')
            api = "responses" if path.endswith("/responses") else "anthropic" if path.endswith("/messages") else None
            if api is None:
                stub.record({"api": None, "path": self.path, "status": 404})
                return self._send(404, b'{"error": {"message": "unknown endpoint (model stub)"}}')
            self._answer(api, raw)

        def _answer(self, api: str, raw: bytes) -> None:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return self._send(400, b'{"error": {"message": "request body is not JSON (model stub)"}}')
            texts = user_texts(api, body)
            mode = stub.next_mode()
            n = len(stub.model_requests()) + 1
            entry = {"n": n, "api": api, "path": self.path, "mode": mode, "model": body.get("model"),
                     "stream": body.get("stream"), "user_texts": texts, "at": time.time(),
                     "body_text": raw.decode("utf-8", "replace")[:400_000],  # e.g. the cwd the agent was told
                     "auth": bool(self.headers.get("Authorization") or self.headers.get("x-api-key"))}
            if mode in ERRORS:
                status, openai_body, anthropic_body = ERRORS[mode]
                stub.record({**entry, "status": status})
                headers = {"x-should-retry": "false"} if mode == "401" else {"retry-after": "0"}
                return self._send(status, json.dumps(anthropic_body if api == "anthropic" else openai_body).encode(),
                                  headers=headers)
            stub.record({**entry, "status": 200})
            if mode == "hang":
                stub.stopping.wait()
                return
            text = reply_text(n, api, texts)
            usage_in = len(raw) // 4
            if not body.get("stream"):
                return self._send(200, json.dumps(_whole_message(text, body.get("model", ""), usage_in)).encode())
            if mode == "tool":
                events = (responses_tool_call(stub.tool_command) if api == "responses"
                          else messages_tool_call(stub.tool_command, body.get("model", "claude")))
            else:
                events = (responses_stream(text, usage_in) if api == "responses"
                          else messages_stream(text, body.get("model", "claude"), usage_in))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            if mode == "drop":
                self.wfile.write(events[0])
                self.wfile.flush()
                return self._reset()
            for event in events:
                self.wfile.write(event)
            self.wfile.flush()
            self.close_connection = True

        def _reset(self) -> None:
            """Close with a TCP reset, as a dropped connection looks to the client."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

        def _send(self, status: int, payload: bytes, ctype: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    return Handler


def _whole_message(text: str, model: str, usage_in: int) -> dict:
    return {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": usage_in, "output_tokens": len(text) // 4}}


def main(argv: list[str] | None = None) -> None:
    """Run the stub in the foreground until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.model_stub", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--mode", default="ok", choices=MODES)
    parser.add_argument("--log", help="append each request as a JSON line to this file")
    args = parser.parse_args(argv)
    stub = ModelStub(args.host, args.port, args.log)
    stub.set_mode(args.mode)
    print(f"model stub listening on {stub.url} (mode {args.mode})", flush=True)
    try:
        stub.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub.stopping.set()
        stub.server.server_close()


if __name__ == "__main__":
    main()
