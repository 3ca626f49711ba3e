"""Fault injection for crash tests and soak runs, off unless its environment variables are set.

- ``ALTER0_FAULT_DELAY="route=2,close=1"`` stalls a stage that long (a cancel ends the stall).
- ``ALTER0_FAULT_KILL="submit"`` SIGKILLs the process at that point: ``submit`` is right after a new job's
  commit, before its route message is sent (the web or CLI dying between the two); ``hand_on_generate``
  (``_route``, ``_close``) is a worker that finished a job's stage, before it hands the turn to the next job;
  ``agent_spawned`` is a worker right after it started an agent, before the dead-worker guard lists it.
- ``ALTER0_FAULT_CLOCK_SKEW=-30`` sets this process's clock (``models.now``) 30 s behind, as a host whose
  clock is wrong.
"""

from __future__ import annotations

import os
import signal

#: Seconds added to this process's clock (``models.now``); tests only.
CLOCK_SKEW = float(os.environ.get("ALTER0_FAULT_CLOCK_SKEW") or 0)


def _spec(name: str) -> dict[str, str]:
    return dict(part.split("=", 1) if "=" in part else (part, "") for part in os.environ.get(name, "").split(",")
                if part)


#: Read once: the variables are set when the process starts (tests and soak runs start processes with them).
_DELAY = _spec("ALTER0_FAULT_DELAY")
_KILL = _spec("ALTER0_FAULT_KILL")


def stall_of(stage: str) -> float:
    """Seconds ALTER0_FAULT_DELAY stalls ``stage`` (0: none; the stage waits on its cancel event)."""
    return float(_DELAY.get(stage) or 0)


def kill_point(point: str) -> None:
    """Die here, as a crash would, if ALTER0_FAULT_KILL names this point."""
    if point in _KILL:
        os.kill(os.getpid(), signal.SIGKILL)
