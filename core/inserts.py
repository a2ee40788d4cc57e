"""Rows that belong together, written in one statement.

`insert_together(payments, orders, lines, logs)` inserts groups of new model instances, in
order; a foreign key of a later group's row may name an earlier group's row by `Inserted(obj)`
before either has a primary key. On PostgreSQL the groups go in as one statement, each
group's INSERT a data-modifying CTE that the later ones select their keys from: one round
trip, and atomic by itself. Elsewhere (SQLite) each group is a bulk insert, all in one
transaction. Either way the values are those of a normal insert (Django's insert compiler:
defaults, auto_now, field conversions), and afterwards every instance has its primary key and
its `Inserted` keys are its related objects' keys (the relations cached), as after a save().
"""

import functools
from collections.abc import Sequence
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import Expression, Field, Model
from django.db.models.expressions import DatabaseDefault
from django.db.models.sql import InsertQuery


class Inserted(Expression):
    """The primary key of `obj`, inserted by an earlier group of the same insert_together, a
    group of one row."""

    def __init__(self, obj: Model):
        super().__init__(output_field=obj._meta.pk)
        self.obj = obj
        self.alias: str | None = None  # its group's CTE, named by insert_together

    def as_sql(self, compiler, connection):
        column = connection.ops.quote_name(self.obj._meta.pk.column)
        return f"(SELECT {column} FROM {self.alias})", []


def insert_together(*given: Sequence[Model]) -> None:
    groups = [list(objs) for objs in given if objs]
    aliases = {id(obj): f"inserted_{n}" for n, objs in enumerate(groups) for obj in objs}
    refs = list(_references(groups))
    sizes = {id(obj): len(objs) for objs in groups for obj in objs}
    for _, _, ref in refs:
        if id(ref.obj) not in aliases:
            raise ValueError(f"{ref.obj!r} is not inserted before the rows naming it")
        if sizes[id(ref.obj)] != 1:  # its key is read back as the group's only row
            raise ValueError(f"{ref.obj!r} is named by other rows: insert it in a group alone")
        ref.alias = aliases[id(ref.obj)]
    if connection.vendor == "postgresql":
        _insert_as_one_statement(groups)
    else:
        with transaction.atomic():
            for objs in groups:
                members = {id(obj) for obj in objs}
                for obj, field, ref in refs:
                    if id(obj) in members:
                        setattr(obj, field.attname, ref.obj.pk)  # inserted by now
                # Each model here has `objects`, which the Model base does not declare.
                type(objs[0]).objects.bulk_create(objs)  # type: ignore[attr-defined]
    for obj, field, ref in refs:
        setattr(obj, field.name if field.is_relation else field.attname, ref.obj)


def _references(groups):
    for objs in groups:
        for obj in objs:
            for field in obj._meta.concrete_fields:
                value = obj.__dict__.get(field.attname)
                if isinstance(value, Inserted):
                    yield obj, field, value


def _insert_as_one_statement(groups: list[list[Model]]) -> None:
    params: list[Any]
    ctes, params, selects = [], [], []
    for n, objs in enumerate(groups):
        alias, meta = f"inserted_{n}", objs[0]._meta
        sql, values = _insert_sql(objs) or _compiled_insert_sql(objs)
        ctes.append(f"{alias} AS ({sql})")
        params.extend(values)
        selects.append(f"ARRAY(SELECT {connection.ops.quote_name(meta.pk.column)} FROM {alias})")
    sql = f"WITH {', '.join(ctes)} SELECT {', '.join(selects)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        keys = cursor.fetchone()
    for objs, pks in zip(groups, keys, strict=True):
        # RETURNING gives a multi-row VALUES's rows in its order, as bulk_create relies on.
        for obj, pk in zip(objs, pks, strict=True):
            obj.pk = pk
            obj._state.adding, obj._state.db = False, connection.alias


def _insertable(model: type[Model]) -> list[Field]:
    meta = model._meta
    return [f for f in meta.concrete_fields if not f.generated and f is not meta.auto_field]


@functools.cache
def _plain_insert(model: type[Model]) -> tuple[list[Field], str] | None:
    """The columns and the head of a plain INSERT of the model, or None when a field renders
    its own placeholder (a geometry, say): then only Django's insert compiler will do."""
    fields = _insertable(model)
    if any(hasattr(f, "get_placeholder") for f in fields):
        return None
    qn = connection.ops.quote_name
    head = f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in fields)})"
    return fields, head


@functools.cache
def _database_default(model: type[Model], name: str) -> tuple[str, tuple]:
    """A field's database default (`db_default`: the database's time, a constant) as SQL,
    compiled once per process."""
    # A concrete field whose value was a DatabaseDefault, so its db_default is an expression.
    field = cast(Field, model._meta.get_field(name))
    compiler = InsertQuery(model).get_compiler(connection=connection)
    expression = cast(Expression, field.db_default).resolve_expression(
        compiler.query, allow_joins=False
    )
    sql, params = compiler.compile(expression)
    return sql, tuple(params)


def _insert_sql(objs: list[Model]) -> tuple[str, list] | None:
    """The group's INSERT ... RETURNING with the values Django's insert compiler would send
    (each field's pre_save and get_db_prep_save, a database default's own SQL), rendered
    directly: the compiler's general machinery costs more CPU than the rest of an order's
    creation. None when a value is another expression: the compiler renders those."""
    plain = _plain_insert(type(objs[0]))
    if plain is None:
        return None
    fields, head = plain
    params: list[Any]
    rows, params = [], []
    for obj in objs:
        marks = []
        for field in fields:
            value = field.pre_save(obj, add=True)
            if isinstance(value, Inserted):
                marks.append(value.as_sql(None, connection)[0])
            elif isinstance(value, DatabaseDefault):
                sql, default = _database_default(type(obj), field.name)
                marks.append(sql)
                params.extend(default)
            elif hasattr(value, "resolve_expression"):
                return None
            else:
                marks.append("%s")
                params.append(field.get_db_prep_save(value, connection=connection))
        rows.append(f"({', '.join(marks)})")
    pk = connection.ops.quote_name(objs[0]._meta.pk.column)
    return f"{head} VALUES {', '.join(rows)} RETURNING {pk}", params


def _compiled_insert_sql(objs: list[Model]) -> tuple[str, tuple]:
    query = InsertQuery(type(objs[0]))
    query.insert_values(_insertable(type(objs[0])), objs)
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = [objs[0]._meta.pk]
    [(sql, values)] = compiler.as_sql()
    return sql, values
