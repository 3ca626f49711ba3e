"""The ``alter0`` command line: main.py (messages, jobs, tasks, worker, status), ops.py, web.py, and the
``bench`` commands of alter0.tools. Every failure is one line on stderr and a named exit code."""

from .main import main

__all__ = ["main"]
