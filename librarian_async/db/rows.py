"""Helpers shared by the query modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.errors import ConflictError

Row = TypeVar("Row")


async def insert_unique(session: AsyncSession, row: Row, description: str) -> Row:
    """Insert ``row``; a unique-constraint clash becomes "<description> already exists"."""
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as error:
        raise ConflictError(f"{description} already exists") from error
    return row


def table_of(model: type[Any]) -> Table:
    """The Core table of a mapped class. Core statements on it skip the ORM's per-row
    bookkeeping (several times cheaper for bulk writes of a page of rows)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


async def insert_with_ids(
    session: AsyncSession, model: type[Row], values: list[dict[str, Any]], key: str
) -> list[Row]:
    """Insert ``values`` as rows of ``model`` with one multi-row Core INSERT ... RETURNING
    and return them as (transient) model objects with their ids, in the given order.

    ``key`` must tell the rows apart (the ids come back matched by it: asking the
    database for them in parameter order costs ~10x on SQLite). For pages of new rows
    whose ids are needed at once: the ORM's flush costs several times more per row."""
    table = table_of(model)
    statement = insert(table).returning(table.c[key], table.c.id)
    ids: dict[Any, int] = dict((await session.execute(statement, values)).all()) if values else {}
    if len(ids) != len(values):
        raise ValueError(f"insert_with_ids: {key!r} does not tell the rows apart")
    make: Callable[..., Row] = model
    return [make(id=ids[row[key]], **row) for row in values]


def per_row(subquery: Select[Any]) -> Select[Any]:
    """Keep a correlated EXISTS a per-row index lookup (PostgreSQL).

    ``OFFSET 0`` stops PostgreSQL from turning the subquery into an anti-join, whose plan
    depends on table statistics: on freshly filled tables (no ANALYZE yet) it chose a scan
    of the whole clone store per candidate, quadratic in the page. As a per-row subplan it
    is always a lookup in the unique index; SQLite plans it that way anyway.
    """
    return subquery.offset(0)


async def insert_ignoring_duplicates(
    session: AsyncSession, model: type[Any], rows: list[dict[str, Any]]
) -> None:
    """Insert the rows; a row clashing with a unique constraint is skipped."""
    dialect = session.get_bind().dialect.name
    statement: Any
    if dialect == "postgresql":
        statement = postgresql.insert(model).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(model).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two supported backends exist
        statement = insert(model)
    await session.execute(statement, rows)
