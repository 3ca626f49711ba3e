"""The one module that owns the database connection of a request (peewee, one connection per thread).

SQLite connections stay open in their (long-lived gunicorn) thread: opening one costs its pragmas on every
request. Server databases are connected per request and closed after it (streams close when they end).
"""

from __future__ import annotations

from flask import Flask, current_app

from alter0.database import is_sqlite
from alter0.models import db
from alter0.runtime import Runtime


def get_rt() -> Runtime:
    """The process's Runtime (config, database, queue)."""
    return current_app.extensions["alter0"]


def _connect() -> None:
    db.connect(reuse_if_open=True)


def _close(exc: BaseException | None = None) -> None:
    if not is_sqlite() and not db.is_closed():
        db.close()


def init_app(app: Flask) -> None:
    """Connect before each request; close server connections after it."""
    app.before_request(_connect)
    app.teardown_request(_close)
