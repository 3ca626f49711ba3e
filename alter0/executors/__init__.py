"""Executors: the adapters that run a prompt through a coding-agent CLI or a model server.

Public API: ``build_executor(name, cfg)``, ``resolve_name(cfg)``, ``available_executors(cfg)``,
``EXECUTOR_NAMES`` and the contract ``ExecRequest`` / ``ExecResult`` / ``Executor`` / ``ExecutorError``.
"""

from .base import ExecRequest, ExecResult, Executor, ExecutorError
from .registry import EXECUTOR_NAMES, available_executors, build_executor, resolve_name

__all__ = ["EXECUTOR_NAMES", "ExecRequest", "ExecResult", "Executor", "ExecutorError",
           "available_executors", "build_executor", "resolve_name"]
