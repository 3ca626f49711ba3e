"""SELECTs written out once per database and run with new values.

Peewee writes a query's SQL anew on every call: about a millisecond for a row of 20-45 columns, while SQLite
answers it in some 20 µs. The stages run a dozen such SELECTs per message, so the hot ones are built once here
and re-run with their arguments (rows come back as model instances, as from the query itself).

    task_by_id = Prepared(lambda task_id: Task.select().where(Task.id == task_id))
    task = task_by_id.first(7)

The builder gets placeholders; the values given later go to the database as they are (no field conversion), so
pass what the column stores: ints, strings, floats.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator

from peewee import Value

from .models import db


class _Arg:
    """The position of one argument in a prepared query's parameters."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


class Prepared:
    """A SELECT built by ``build(*placeholders)``, compiled on first use with the database in use."""

    def __init__(self, build: Callable[..., Any]):
        self.build = build
        self.arity = len(inspect.signature(build).parameters)
        self._compiled: tuple[Any, Any, str, list] | None = None  # (database, query, sql, params)

    def _compile(self) -> tuple[Any, Any, str, list]:
        compiled = self._compiled
        if compiled is None or compiled[0] is not db.obj:
            query = self.build(*(Value(_Arg(i), converter=False) for i in range(self.arity)))
            sql, params = query.sql()
            compiled = self._compiled = (db.obj, query, sql, params)
        return compiled

    def _params(self, params: list, args: tuple) -> list:
        if len(args) != self.arity:
            raise TypeError(f"prepared query takes {self.arity} argument(s), got {len(args)}")
        return [args[p.index] if isinstance(p, _Arg) else p for p in params]

    def _raw(self, args: tuple):
        _, query, sql, params = self._compile()
        return query.model.raw(sql, *self._params(params, args))

    def rows(self, *args) -> Iterator[Any]:
        """The query's rows as model instances."""
        return iter(self._raw(args))

    def tuples(self, *args) -> Iterator[tuple]:
        """The query's rows as tuples of the selected columns (converted as the fields say): cheaper than models."""
        return iter(self._raw(args).tuples())

    def first(self, *args) -> Any | None:
        """The first row, or None."""
        return next(self.rows(*args), None)
