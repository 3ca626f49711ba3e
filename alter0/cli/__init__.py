"""The ``alter0`` command line: app.py (messages, jobs, tasks, worker, status), ops.py, web.py, and the
``bench`` commands of alter0.tools. Every failure is one line on stderr and a named exit code."""

from .app import main

__all__ = ["main"]
