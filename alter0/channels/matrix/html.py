"""Reply text → a Matrix message content: the plain ``body`` as written, and ``format: org.matrix.custom.html`` with
a ``formatted_body`` where fenced code blocks are ``<pre><code class="language-X">`` and inline `code` is
``<code>``; everything else is escaped text with line breaks."""

from __future__ import annotations

import html
import re

from ..text import FENCE

FORMAT = "org.matrix.custom.html"
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def content(text: str, msgtype: str = "m.text") -> dict:
    """A message content with the plain body and its HTML rendering."""
    return {"msgtype": msgtype, "body": text, "format": FORMAT, "formatted_body": to_html(text)}


def to_html(text: str) -> str:
    out: list[str] = []
    prose: list[str] = []
    code: list[str] | None = None
    lang = ""
    for line in text.split("\n"):
        if line.lstrip().startswith(FENCE):
            if code is None:
                out.append(_prose(prose))
                prose, code, lang = [], [], line.strip()[len(FENCE):].strip()
            else:
                out.append(_code(code, lang))
                code = None
            continue
        (prose if code is None else code).append(line)
    if code is not None:  # an unclosed block: shown as code to its end
        out.append(_code(code, lang))
    out.append(_prose(prose))
    return "".join(out)


def _code(lines: list[str], lang: str) -> str:
    cls = f' class="language-{html.escape(lang.split()[0], quote=True)}"' if lang else ""
    return f"<pre><code{cls}>{html.escape(chr(10).join(lines), quote=False)}\n</code></pre>"


def _prose(lines: list[str]) -> str:
    text = "\n".join(lines).strip("\n")
    if not text:
        return ""
    escaped = html.escape(text, quote=False)
    return INLINE_CODE.sub(r"<code>\1</code>", escaped).replace("\n", "<br/>")
