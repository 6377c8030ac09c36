"""Queries on stores, files and instances, named by intent. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import File, Instance, Store
from librarian_async.db.rows import insert_unique
from librarian_async.enums import DeletionPolicy
from librarian_async.errors import ConflictError, NotFoundError


async def add_store(session: AsyncSession, store: Store) -> Store:
    """Insert a store; a taken name is a ConflictError."""
    return await insert_unique(session, store, f"store {store.name!r}")


async def store_by_name(session: AsyncSession, name: str) -> Store:
    store = await session.scalar(select(Store).where(Store.name == name))
    if store is None:
        raise NotFoundError(f"no store named {name!r}")
    return store


async def all_stores(session: AsyncSession) -> Sequence[Store]:
    return (await session.scalars(select(Store).order_by(Store.name))).all()


async def store_names(session: AsyncSession) -> set[str]:
    return set((await session.scalars(select(Store.name))).all())


async def file_by_name(session: AsyncSession, name: str) -> File:
    file = await session.get(File, name)
    if file is None:
        raise NotFoundError(f"no file named {name!r}")
    return file


async def file_exists(session: AsyncSession, name: str) -> bool:
    return await session.get(File, name) is not None


async def add_file_with_instance(
    session: AsyncSession,
    file: File,
    *,
    store: Store,
    path: str,
    deletion_policy: DeletionPolicy,
    created_time: datetime,
) -> Instance:
    """Catalogue a new file and its first instance; a taken name is a ConflictError."""
    session.add(file)
    instance = Instance(
        path=path,
        file_name=file.name,
        store_id=store.id,
        deletion_policy=deletion_policy,
        created_time=created_time,
        available=True,
    )
    session.add(instance)
    try:
        await session.flush()
    except IntegrityError as error:
        raise ConflictError(f"file {file.name!r} is already catalogued") from error
    return instance


async def list_files(
    session: AsyncSession, *, limit: int, after: str | None = None, store: Store | None = None
) -> Sequence[File]:
    """One page of files in name order (keyset pagination on the primary key)."""
    query = select(File).order_by(File.name).limit(limit)
    if after is not None:
        query = query.where(File.name > after)
    if store is not None:
        query = query.where(
            File.name.in_(select(Instance.file_name).where(Instance.store_id == store.id))
        )
    return (await session.scalars(query)).all()


async def instances_of(session: AsyncSession, file_name: str) -> Sequence[tuple[Instance, str]]:
    """Every instance of a file with the name of its store."""
    query = (
        select(Instance, Store.name)
        .join(Store, Store.id == Instance.store_id)
        .where(Instance.file_name == file_name)
        .order_by(Instance.id)
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def count_instances(session: AsyncSession, store_id: int) -> int:
    query = select(func.count()).select_from(Instance).where(Instance.store_id == store_id)
    return int(await session.scalar(query) or 0)


@dataclass(frozen=True, slots=True)
class CheckCandidate:
    """What an integrity check needs of one instance: plain values, no ORM object."""

    instance_id: int
    path: str
    file_name: str
    size: int
    checksum: str


async def recent_check_candidates(
    session: AsyncSession,
    *,
    store_id: int,
    created_after: datetime,
    after_id: int,
    limit: int,
) -> list[CheckCandidate]:
    """A page of available instances on a store created after a time, in id order.

    Keyset pagination (``after_id``) keeps every page one indexed range scan however large
    the window is; plain columns, not ORM objects, keep the event loop's share small.
    """
    query = (
        select(Instance.id, Instance.path, File.name, File.size, File.checksum)
        .join(File, File.name == Instance.file_name)
        .where(
            Instance.store_id == store_id,
            Instance.created_time >= created_after,
            Instance.available.is_(True),
            Instance.id > after_id,
        )
        .order_by(Instance.id)
        .limit(limit)
    )
    return [CheckCandidate(*row) for row in (await session.execute(query)).all()]


async def instances_with_files(
    session: AsyncSession, instance_ids: Sequence[int]
) -> dict[int, tuple[Instance, File]]:
    """The instances with these ids and their files, keyed by instance id."""
    query = (
        select(Instance, File)
        .join(File, File.name == Instance.file_name)
        .where(Instance.id.in_(instance_ids))
    )
    return {row[0].id: (row[0], row[1]) for row in (await session.execute(query)).all()}
