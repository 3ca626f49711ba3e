"""Statements written out once per database and run with new values: the hot path's SELECTs, UPDATEs, INSERTs.

Peewee writes a query's SQL anew on every call: about a millisecond for a row of 20-45 columns, while SQLite
answers it in some 20 µs. The stages run some 35 statements per message, so the hot ones are built once here
and re-run with their arguments (rows come back as model instances, as from the query itself, or as tuples).
Writes: ``Prepared(...).execute(*args)`` (rows changed; an INSERT's new id), and ``insert`` / ``update`` for
the common shapes (Model.create without building the instance; equality conditions), each written once per
set of columns.

    task_by_id = Prepared(lambda task_id: Task.select().where(Task.id == task_id))
    task = task_by_id.first(7)

The builder gets placeholders; the values given later go to the database as they are (no field conversion), so
pass what the column stores: ints, strings, floats.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator

from peewee import (AutoField, BigIntegerField, CharField, Field, Insert, IntegerField, Node, Select, TextField,
                    Value)

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
        self._columns: list[tuple[str, Callable | None]] | None = None

    def _compile(self) -> tuple[Any, Any, str, list]:
        compiled = self._compiled
        if compiled is None or compiled[0] is not db.obj:
            query = self.build(*(Value(_Arg(i), converter=False) for i in range(self.arity)))
            sql, params = query.sql()
            self._columns = _plain_columns(query)
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
        """The query's rows as model instances (built straight from the row when the query selects plain columns
        of its model: Peewee would map the columns to fields anew for every run)."""
        _, query, sql, params = self._compile()
        if self._columns is None:
            return iter(self._raw(args))
        return self._models(query.model, self._fetch(sql, params, args))

    def _fetch(self, sql: str, params: list, args: tuple, one: bool = False) -> list:
        """The rows of one run, read at once and the statement closed (an open one would hold its snapshot)."""
        cursor = db.obj.execute_sql(sql, self._params(params, args))
        try:
            if one:
                row = cursor.fetchone()
                return [] if row is None else [row]
            return cursor.fetchall()
        finally:
            cursor.close()

    def _models(self, model, rows: list) -> Iterator[Any]:
        columns = self._columns
        for row in rows:
            obj = model.__new__(model)
            obj.__data__ = {name: value if value is None or convert is None else convert(value)
                            for (name, convert), value in zip(columns, row)}
            obj._dirty, obj.__rel__ = set(), {}
            yield obj

    def tuples(self, *args) -> Iterator[tuple]:
        """The query's rows as tuples of the selected columns (converted as the fields say): cheaper than models."""
        _, query, sql, params = self._compile()
        if self._columns is None:
            return iter(self._raw(args).tuples())
        columns = self._columns
        return (tuple(value if value is None or convert is None else convert(value)
                      for (_, convert), value in zip(columns, row))
                for row in self._fetch(sql, params, args))

    def first(self, *args) -> Any | None:
        """The first row, or None."""
        _, query, sql, params = self._compile()
        if self._columns is None:
            return next(self.rows(*args), None)
        return next(self._models(query.model, self._fetch(sql, params, args, one=True)), None)

    def execute(self, *args) -> int:
        """Run a prepared INSERT / UPDATE / DELETE: the new row's id for an INSERT, else the rows changed."""
        _, query, sql, params = self._compile()
        database = db.obj
        cursor = database.execute_sql(sql, self._params(params, args))
        if isinstance(query, Insert):
            return cursor.fetchone()[0] if database.returning_clause else cursor.lastrowid
        return database.rows_affected(cursor)


def _plain_columns(query) -> list[tuple[str, Callable | None]] | None:
    """(field name, its python_value) per selected column when a SELECT reads plain columns of its own model."""
    if not isinstance(query, Select):
        return None
    selected = query._returning
    if not selected or not all(isinstance(c, Field) and c.model is query.model for c in selected):
        return None
    return [(c.name, None if type(c) in _NATIVE else c.python_value) for c in selected]


#: Fields whose values come back from the driver as they are kept (str, int): no conversion to run per row.
_NATIVE = {CharField, TextField, IntegerField, BigIntegerField, AutoField}


_SHAPES: dict[tuple, Prepared] = {}


def _fields(model, names) -> list:
    return [model._meta.fields[name] for name in names]


def insert(model, **values) -> int:
    """``model.create(**values)`` without building the instance: the fields' defaults filled in as Peewee fills
    them, values converted by their fields; the new row's id."""
    meta = model._meta
    for field, default in meta.defaults.items():
        if field.name not in values:
            values[field.name] = default() if callable(default) else default
    names = tuple(values)
    key = ("insert", model, names)
    prepared = _SHAPES.get(key)
    if prepared is None:
        def build(*args):
            query = model.insert(dict(zip(_fields(model, names), args)))
            return query.returning(meta.primary_key) if db.obj.returning_clause else query
        prepared = _SHAPES[key] = Prepared(build)
        prepared.arity = len(names)
    return prepared.execute(*(f.db_value(values[f.name]) for f in _fields(model, names)))


def update(model, values: dict, where: dict, add: dict | None = None) -> int:
    """``UPDATE model SET name = value, ... [, name = name + n] WHERE name = value AND ...``: the rows changed.
    ``values`` and ``where`` map field names to plain values (converted by their fields), ``add`` to increments;
    a peewee expression among the values runs through Peewee as usual."""
    add = add or {}
    if any(isinstance(v, Node) for v in (*values.values(), *where.values(), *add.values())):
        query = model.update({**values, **{n: getattr(model, n) + v for n, v in add.items()}})
        return query.where(*[getattr(model, n) == v for n, v in where.items()]).execute()
    names, conds, adds = tuple(values), tuple(where), tuple(add)
    key = ("update", model, names, conds, adds)
    prepared = _SHAPES.get(key)
    if prepared is None:
        def build(*args):
            sets = dict(zip(_fields(model, names), args))
            sets.update({f: f + a for f, a in zip(_fields(model, adds), args[len(names) + len(conds):])})
            tests = [f == a for f, a in zip(_fields(model, conds), args[len(names):])]
            return model.update(sets).where(*tests)
        prepared = _SHAPES[key] = Prepared(build)
        prepared.arity = len(names) + len(conds) + len(adds)
    return prepared.execute(*(f.db_value(values[f.name]) for f in _fields(model, names)),
                            *(f.db_value(where[f.name]) for f in _fields(model, conds)),
                            *(f.db_value(add[f.name]) for f in _fields(model, adds)))


def create(model, **values):
    """``model.create(**values)`` through ``insert``: the instance (defaults filled in, its new id set)."""
    instance = model(**values)
    new_id = insert(model, **instance.__data__)
    if instance._pk is None:
        instance._pk = new_id
    instance._dirty.clear()
    return instance
