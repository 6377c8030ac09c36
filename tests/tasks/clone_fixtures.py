"""Helpers for the create_local_clone tests: real stores on disk, files catalogued in bulk.

Checksums come from hashlib directly, so the task is checked against an independent
reference. Imported explicitly by the test module (no fixtures are defined here).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.context import Context
from librarian_async.db import catalog
from librarian_async.db.models import Base, File, Instance, Store
from librarian_async.enums import DeletionPolicy

Row = TypeVar("Row", bound=Base)


def md5_of(content: bytes) -> str:
    return f"md5:::{hashlib.md5(content).hexdigest()}"


def md5_of_path(path: Path) -> str:
    hasher = hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            hasher.update(chunk)
    return f"md5:::{hasher.hexdigest()}"


@dataclass(frozen=True)
class SourceFile:
    """A file written into the source store's area and catalogued with one instance."""

    name: str
    path: Path
    instance_id: int
    checksum: str
    size: int


async def make_store(
    app: Context,
    root: Path,
    name: str,
    *,
    enabled: bool = True,
    report_full_fraction: float = 1.0,
) -> Store:
    """A ``stores`` row whose staging and store areas are fresh directories under ``root``."""
    staging, area = root / name / "staging", root / name / "store"
    staging.mkdir(parents=True)
    area.mkdir(parents=True)
    row = Store(
        name=name,
        staging_path=str(staging),
        store_path=str(area),
        enabled=enabled,
        report_full_fraction=report_full_fraction,
    )
    async with app.sessions.begin() as session:
        return await catalog.add_store(session, row)


def area_path(store: Store, name: str) -> Path:
    return Path(store.store_path).joinpath(*name.split("/"))


async def add_files(
    app: Context,
    store: Store,
    contents: dict[str, bytes],
    *,
    created: datetime | None = None,
    policy: DeletionPolicy = DeletionPolicy.DISALLOWED,
    checksums: dict[str, str] | None = None,
) -> list[SourceFile]:
    """Write each file into the store's area and catalogue them all in one transaction.

    ``checksums`` overrides the catalogued checksum of some files (to catalogue a lie).
    Instances get ids in the order of ``contents``.
    """
    checksums = checksums or {}
    added = []
    async with app.sessions.begin() as session:
        for name, content in contents.items():
            path = area_path(store, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            checksum = checksums.get(name, md5_of(content))
            item = SourceFile(name, path, 0, checksum, len(content))
            added.append(await _catalogue(app, session, store, item, created, policy))
    return added


async def add_sparse_file(app: Context, store: Store, name: str, size: int) -> SourceFile:
    """A large file of holes, catalogued with a checksum nobody computes: it is never read."""
    path = area_path(store, name)
    with path.open("wb") as handle:
        handle.truncate(size)
    item = SourceFile(name, path, 0, "md5:::" + "0" * 32, size)
    async with app.sessions.begin() as session:
        return await _catalogue(app, session, store, item, None, DeletionPolicy.DISALLOWED)


async def _catalogue(
    app: Context,
    session: AsyncSession,
    store: Store,
    item: SourceFile,
    created: datetime | None,
    policy: DeletionPolicy,
) -> SourceFile:
    created = app.now() - timedelta(minutes=1) if created is None else created
    file = File(
        name=item.name,
        create_time=created,
        size=item.size,
        checksum=item.checksum,
        uploader="test",
        source="test",
    )
    instance = await catalog.add_file_with_instance(
        session,
        file,
        store=store,
        path=str(item.path),
        deletion_policy=policy,
        created_time=created,
    )
    return replace(item, instance_id=instance.id)


async def rows(app: Context, model: type[Row]) -> list[Row]:
    async with app.sessions() as session:
        query = select(model).order_by(*model.__table__.primary_key.columns)
        return list((await session.scalars(query)).all())


async def instances_on(app: Context, store: Store) -> dict[str, Instance]:
    """The instances of a store by file name."""
    async with app.sessions() as session:
        found = await session.scalars(select(Instance).where(Instance.store_id == store.id))
        return {instance.file_name: instance for instance in found}


def random_files(prefix: str, count: int, size: int) -> dict[str, bytes]:
    return {f"{prefix}{number:03}.bin": os.urandom(size) for number in range(count)}
