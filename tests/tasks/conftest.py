"""Fixtures for the task tests: real stores on disk, catalogued with real checksums.

Checksums are computed here with hashlib and xxhash directly, not with our checksum
module, so a task is checked against an independent reference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import xxhash

from librarian_async.context import Context
from librarian_async.db import catalog
from librarian_async.db.models import File, Store
from librarian_async.enums import DeletionPolicy


def checksum_of(content: bytes, algorithm: str = "md5") -> str:
    """``"<alg>:::<hex>"`` of ``content``; ``"legacy"`` gives a bare md5 hex string."""
    if algorithm == "legacy":
        return hashlib.md5(content).hexdigest()
    if algorithm == "xxh3":
        return f"xxh3:::{xxhash.xxh3_128(content).hexdigest()}"
    return f"{algorithm}:::{hashlib.new(algorithm, content).hexdigest()}"


@dataclass(frozen=True)
class Catalogued:
    """A file written into a store area and catalogued with one instance."""

    name: str
    path: Path
    instance_id: int
    checksum: str
    size: int


class StoreFiles:
    """Writes files into a store's area and catalogues them (file + instance)."""

    def __init__(self, app: Context, store: Store) -> None:
        self.app = app
        self.store = store
        self.area = Path(store.store_path)

    def path_of(self, name: str) -> Path:
        return self.area.joinpath(*name.split("/"))

    async def add(
        self,
        name: str,
        content: bytes | None = None,
        *,
        algorithm: str = "md5",
        created: datetime | None = None,
        available: bool = True,
    ) -> Catalogued:
        """Write ``content`` (default: derived from the name) and catalogue it correctly."""
        content = name.encode() * 100 if content is None else content
        path = self.path_of(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        checksum = checksum_of(content, algorithm)
        return await self.catalogue(
            name, checksum, len(content), created=created, available=available
        )

    async def catalogue(
        self,
        name: str,
        checksum: str,
        size: int,
        *,
        created: datetime | None = None,
        available: bool = True,
    ) -> Catalogued:
        """Catalogue the file already at ``name`` in the area (or meant to be there)."""
        created = self.app.now() - timedelta(minutes=1) if created is None else created
        path = self.path_of(name)
        file = File(
            name=name,
            create_time=created,
            size=size,
            checksum=checksum,
            uploader="test",
            source="test",
        )
        async with self.app.sessions.begin() as session:
            instance = await catalog.add_file_with_instance(
                session,
                file,
                store=self.store,
                path=str(path),
                deletion_policy=DeletionPolicy.DISALLOWED,
                created_time=created,
            )
            instance.available = available
        return Catalogued(name, path, instance.id, checksum, size)


async def make_store(app: Context, root: Path, name: str) -> Store:
    """A ``stores`` row whose staging and store areas are fresh directories under ``root``."""
    staging, area = root / name / "staging", root / name / "store"
    staging.mkdir(parents=True)
    area.mkdir(parents=True)
    async with app.sessions.begin() as session:
        return await catalog.add_store(
            session, Store(name=name, staging_path=str(staging), store_path=str(area))
        )


@pytest.fixture
async def store(app: Context, tmp_path: Path) -> Store:
    return await make_store(app, tmp_path, "main")


@pytest.fixture
async def other_store(app: Context, tmp_path: Path) -> Store:
    return await make_store(app, tmp_path, "other")


@pytest.fixture
def files(app: Context, store: Store) -> StoreFiles:
    return StoreFiles(app, store)


@pytest.fixture
def other_files(app: Context, other_store: Store) -> StoreFiles:
    return StoreFiles(app, other_store)
