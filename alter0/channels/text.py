"""A reply split into messages under a platform's length limit without breaking a code block (a block cut in two
is closed at the end of one part and reopened, same language, at the start of the next)."""

from __future__ import annotations

FENCE = "```"


def split(text: str, limit: int) -> list[str]:
    """Parts of at most ``limit`` characters, each with balanced ``` fences."""
    parts: list[str] = []
    current: list[str] = []
    size = 0
    fence: str | None = None  # the opening line of the code block we are in

    def flush() -> None:
        nonlocal current, size
        body = "\n".join(current)
        if fence is not None:
            body += "\n" + FENCE
        if body.strip():
            parts.append(body)
        current = [fence] if fence is not None else []
        size = len(fence) + 1 if fence is not None else 0

    for line in _lines(text, limit - 2 * (len(FENCE) + 40)):
        closing = len(FENCE) + 1 if fence is not None else 0
        if current and size + len(line) + 1 + closing > limit:
            flush()
        current.append(line)
        size += len(line) + 1
        if line.lstrip().startswith(FENCE):
            fence = None if fence is not None else line.strip()[:40]
    if fence is not None:  # an unclosed block in the text itself: close it
        current.append(FENCE)
        fence = None
    flush()
    return parts or [""]


def _lines(text: str, width: int):
    """The text's lines, any longer than ``width`` cut into pieces."""
    for line in text.split("\n"):
        while len(line) > width:
            yield line[:width]
            line = line[width:]
        yield line
