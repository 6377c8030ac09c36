"""Add a local file to the catalogue: stream it into staging, commit it, record it.

Used by ``file add``, the quick start and the demo. The copy is hashed on the same pass,
committed crash-safely into the store area, and only then catalogued; if cataloguing fails,
a file this call put into the store is removed again, so no uncatalogued file stays behind.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from librarian_async.context import Context
from librarian_async.db import catalog
from librarian_async.db.models import File, Store
from librarian_async.enums import DeletionPolicy
from librarian_async.errors import ConflictError, NotFoundError, StoreUnavailableError
from librarian_async.storage.checksum import (
    DEFAULT_ALGORITHM,
    FileDigest,
    copy_and_hash,
    remove_file_or_tree,
)
from librarian_async.storage.convert import local_store
from librarian_async.storage.store import LocalStore


@dataclass(frozen=True)
class IngestOptions:
    uploader: str = "operator"
    algorithm: str = DEFAULT_ALGORITHM
    deletion_policy: DeletionPolicy = DeletionPolicy.DISALLOWED


async def ingest_target(app: Context, name: str) -> tuple[Store, LocalStore]:
    """The store named ``name``, if it is enabled, ingestable and its directories exist."""
    async with app.sessions() as session:
        row = await catalog.store_by_name(session, name)
    if not row.enabled:
        raise StoreUnavailableError(f"store {name!r} is disabled")
    if not row.ingestable:
        raise StoreUnavailableError(f"store {name!r} is not ingestable (takes no new files)")
    store = local_store(row)
    store.ensure_available()
    return row, store


async def add_local_file(
    app: Context,
    store_row: Store,
    store: LocalStore,
    path: Path,
    name: str,
    options: IngestOptions,
) -> FileDigest:
    """Stage a copy of ``path``, commit it to ``name`` in the store, then catalogue it."""
    target = await check_addable(app, store, path, name)
    existed = await asyncio.to_thread(os.path.lexists, target)
    digest = await stage_and_commit(store, path, name, options.algorithm)
    try:
        await catalogue(app, store_row, target, name, digest, options)
    except BaseException:
        if not existed:
            remove_file_or_tree(target)
        raise
    return digest


async def check_addable(app: Context, store: LocalStore, path: Path, name: str) -> Path:
    """Refuse a bad name, a missing source, a full store or a taken name before copying."""
    target = store.resolve_in_store(name)
    if not await asyncio.to_thread(path.is_file):
        raise NotFoundError("not a regular file")
    store.ensure_room((await asyncio.to_thread(path.stat)).st_size)
    async with app.sessions() as session:
        if await catalog.file_exists(session, name):
            raise ConflictError(f"file {name!r} is already catalogued")
    return target


async def stage_and_commit(store: LocalStore, path: Path, name: str, algorithm: str) -> FileDigest:
    """Copy into a fresh staging directory (hashing on the way), then commit into the store."""
    staging = store.make_staging_dir(f"file-add-{path.name}")
    try:
        staged = staging / "file"
        digest = await copy_and_hash(path, staged, algorithm)
        await store.commit(staged, name, digest)
        return digest
    finally:
        store.remove_staging_dir(staging)


async def catalogue(
    app: Context,
    store_row: Store,
    target: Path,
    name: str,
    digest: FileDigest,
    options: IngestOptions,
) -> None:
    file = File(
        name=name,
        create_time=app.now(),
        size=digest.size,
        checksum=digest.checksum,
        uploader=options.uploader,
        source=app.settings.name,
    )
    async with app.sessions.begin() as session:
        await catalog.add_file_with_instance(
            session,
            file,
            store=store_row,
            path=str(target),
            deletion_policy=options.deletion_policy,
            created_time=file.create_time,
        )
