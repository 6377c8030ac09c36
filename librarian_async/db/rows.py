"""Helpers shared by the query modules."""

from __future__ import annotations

from typing import TypeVar

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
