"""Session and thread ids reported by an agent are checked against the shape that agent uses before they are
stored or put on a command line: an id such as ``--sandbox=danger-full-access`` would become an option.

An id that does not fit is refused: the turn's reply stands, the id is dropped (the next turn starts a fresh
session) and an ``executor.session_refused`` event says why.
"""

from __future__ import annotations

import logging
import re
from typing import Callable

log = logging.getLogger(__name__)

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
#: llm conversation ids are ULIDs; tests and older versions use short names: letters and digits first, no spaces.
_WORDLIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
#: The shape of each executor's session ids (codex thread ids and claude session ids are UUIDs).
SHAPES: dict[str, re.Pattern] = {"codex": _UUID, "claude": _UUID, "llm": _WORDLIKE}
#: Characters of a refused id quoted in the event.
QUOTED_CHARS = 80


def valid(executor: str, session_id: object) -> bool:
    """Whether ``session_id`` has the shape ``executor`` uses (any non-option word for an unknown executor)."""
    if not isinstance(session_id, str):
        return False
    return bool(SHAPES.get(executor, _WORDLIKE).match(session_id))


def checked(executor: str, session_id: object, emit: Callable[[str, dict], None], where: str) -> str | None:
    """``session_id`` if valid, else None after emitting ``executor.session_refused`` (None stays None)."""
    if session_id is None or session_id == "":
        return None
    if valid(executor, session_id):
        return session_id  # type: ignore[return-value]
    message = (f"{executor} {where} session id {str(session_id)[:QUOTED_CHARS]!r} does not have the shape "
               f"{executor} uses; refused (the next turn starts a fresh session)")
    log.warning(message)
    emit("executor.session_refused", {"executor": executor, "where": where,
                                      "session_id": str(session_id)[:QUOTED_CHARS], "message": message})
    return None
