"""Queries on peer librarians and on the users who may call us. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import Librarian, User
from librarian_async.db.rows import insert_unique
from librarian_async.errors import NotFoundError


async def add_librarian(session: AsyncSession, librarian: Librarian) -> Librarian:
    return await insert_unique(session, librarian, f"librarian {librarian.name!r}")


async def librarian_by_name(session: AsyncSession, name: str) -> Librarian:
    librarian = await session.scalar(select(Librarian).where(Librarian.name == name))
    if librarian is None:
        raise NotFoundError(f"no librarian named {name!r}")
    return librarian


async def all_librarians(session: AsyncSession) -> Sequence[Librarian]:
    return (await session.scalars(select(Librarian).order_by(Librarian.name))).all()


async def librarian_names(session: AsyncSession) -> set[str]:
    return set((await session.scalars(select(Librarian.name))).all())


async def remove_librarian(session: AsyncSession, name: str) -> None:
    await session.delete(await librarian_by_name(session, name))


async def add_user(session: AsyncSession, user: User) -> User:
    return await insert_unique(session, user, f"user {user.username!r}")


async def user_by_name(session: AsyncSession, username: str) -> User | None:
    return await session.get(User, username)
