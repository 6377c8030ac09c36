"""Queries behind ``search/file``: files by filters, with their instances and remote copies.

Three queries per search whatever the number of results (files, then instances and remote
instances of all of them at once). Callers own the transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import File, Instance, Librarian, RemoteInstance


@dataclass(frozen=True)
class FileFilter:
    """Every field that is not None must match; ``window`` bounds ``create_time`` inclusively."""

    name: str | None = None
    window: tuple[datetime, datetime] | None = None
    uploader: str | None = None
    source: str | None = None


async def find_files(session: AsyncSession, where: FileFilter, *, limit: int) -> Sequence[File]:
    """At most ``limit`` matching files, newest first (then by name)."""
    query = select(File)
    if where.name is not None:
        query = query.where(File.name == where.name)
    if where.window is not None:
        query = query.where(File.create_time.between(*where.window))
    if where.uploader is not None:
        query = query.where(File.uploader == where.uploader)
    if where.source is not None:
        query = query.where(File.source == where.source)
    query = query.order_by(File.create_time.desc(), File.name).limit(limit)
    return (await session.scalars(query)).all()


async def instances_by_file(
    session: AsyncSession, names: Sequence[str]
) -> dict[str, list[Instance]]:
    found: dict[str, list[Instance]] = defaultdict(list)
    if names:
        query = select(Instance).where(Instance.file_name.in_(names)).order_by(Instance.id)
        for instance in (await session.scalars(query)).all():
            found[instance.file_name].append(instance)
    return found


async def remote_copies_by_file(
    session: AsyncSession, names: Sequence[str]
) -> dict[str, list[tuple[str, datetime]]]:
    """``(librarian name, copy time)`` of every known remote copy, per file."""
    found: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    if names:
        query = (
            select(RemoteInstance.file_name, Librarian.name, RemoteInstance.copy_time)
            .join(Librarian, Librarian.id == RemoteInstance.librarian_id)
            .where(RemoteInstance.file_name.in_(names))
            .order_by(RemoteInstance.id)
        )
        for file_name, librarian, copy_time in (await session.execute(query)).all():
            found[file_name].append((librarian, copy_time))
    return found
