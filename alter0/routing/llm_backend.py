"""The llm router and closer: an executor answers strict JSON from a versioned template; failures degrade."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from string import Template
from typing import Callable

from .base import (CloseDecision, CloseInput, Closer, InvalidOutput, RouteDecision, RouteInput, Router,
                   validate_close, validate_route)

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
FENCE_RE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def load_template(name: str) -> tuple[str, Template]:
    """(version, template) of templates/<name>.txt; its first line is ``version: <v>``."""
    head, _, body = (TEMPLATES / f"{name}.txt").read_text(encoding="utf-8").partition("\n")
    if not head.startswith("version:"):
        raise ValueError(f"template {name}.txt must start with a 'version:' line")
    return head.split(":", 1)[1].strip(), Template(body)


def parse_json_object(text: str) -> dict:
    """The one JSON object an executor answered (code fences allowed); InvalidOutput otherwise."""
    text = FENCE_RE.sub("", (text or "").strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise InvalidOutput(f"no JSON object in answer {text[:80]!r}")
    try:
        data = json.loads(text[start:end + 1])
    except ValueError as exc:
        raise InvalidOutput(f"answer is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidOutput("answer is not a JSON object")
    return data


def _ask(run_executor: Callable[[str, float], str], prompt: str, timeout: float) -> dict:
    """Run the executor and parse its answer; a late answer counts as invalid."""
    started = time.monotonic()
    try:
        out = run_executor(prompt, timeout)
    except Exception as exc:  # any executor failure degrades, it never fails the stage
        raise InvalidOutput(f"executor failed: {type(exc).__name__}: {exc}") from None
    if time.monotonic() - started > timeout:
        raise InvalidOutput(f"answer came after the {timeout:g}s limit")
    return parse_json_object(out)


def _turns_text(turns, limit: int = 6, chars: int = 300) -> str:
    return "\n".join(f"    {t.user_id} ({t.role}): {t.content[:chars]}" for t in turns[-limit:]) or "    (none)"


class _AskingBackend:
    """What the llm router and closer share: an executor to ask, a prompt template, a fallback backend."""

    name = "llm"
    template_name = ""

    def __init__(self, run_executor: Callable[[str, float], str], fallback, timeout: float = 10.0):
        self.run_executor, self.fallback, self.timeout = run_executor, fallback, timeout
        self.template_version, self.template = load_template(self.template_name)
        self.version = "llm:" + self.template_version
        self.degraded_reason = ""

    def degrade(self, exc: InvalidOutput, dec):
        """The fallback's decision ``dec``, saying why the llm answer was rejected."""
        logger.warning("llm %s answer rejected (%s); using %s", self.template_name, exc, self.fallback.name)
        dec.reason = f"llm degraded ({exc}); {dec.reason}"[:500]
        dec.version = f"{dec.version} (llm fallback, {self.template_version})"
        return dec


class LLMRouter(_AskingBackend, Router):
    """Asks an executor to route; invalid or late answers degrade to ``fallback`` (logged)."""

    template_name = "route"

    def prompt(self, inp: RouteInput) -> str:
        blocks = []
        for c in inp.candidates:
            idle = max(0.0, inp.at - c.last_active_at) / 60
            blocks.append(f"- task {c.task_id}: {c.title!r}; participants {', '.join(c.participants) or '-'}; "
                          f"idle {idle:.0f} min\n" + (f"    summary: {c.summary[:400]}\n" if c.summary else "")
                          + _turns_text(c.turns))
        return self.template.substitute(candidates="\n".join(blocks) or "(none)", user_id=inp.user_id,
                                        content=inp.content)

    def route(self, inp: RouteInput) -> RouteDecision:
        if not inp.candidates:
            return RouteDecision("new", None, 1.0, "no open task", self.version)
        ids = {c.task_id for c in inp.candidates}
        try:
            raw = _ask(self.run_executor, self.prompt(inp), self.timeout)
            raw["version"] = self.version
            tid = raw.get("task_id")
            if raw.get("decision") == "existing" and str(tid).isdigit() and int(tid) not in ids:
                conf = raw.get("confidence")
                conf = conf if isinstance(conf, (int, float)) and not isinstance(conf, bool) else 0.5
                return RouteDecision("new", None, min(max(float(conf), 0.0), 1.0),
                                     f"llm named task {tid}, which is not open: new task", self.version)
            return validate_route(raw, ids)
        except InvalidOutput as exc:
            return self.degrade(exc, self.fallback.route(inp))


class LLMCloser(_AskingBackend, Closer):
    """Asks an executor whether the task is finished; invalid or late answers degrade to ``fallback``."""

    template_name = "close"

    def prompt(self, inp: CloseInput) -> str:
        return self.template.substitute(history=_turns_text(inp.turns), user_message=inp.user_message[:2000],
                                        reply=inp.reply[-3000:])

    def decide(self, inp: CloseInput) -> CloseDecision:
        try:
            raw = _ask(self.run_executor, self.prompt(inp), self.timeout)
            raw["version"] = self.version
            return validate_close(raw)
        except InvalidOutput as exc:
            return self.degrade(exc, self.fallback.decide(inp))
