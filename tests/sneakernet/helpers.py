"""Helpers of the SneakerNet tests: stores on real directories, files catalogued with real
checksums (from hashlib, not our checksum module), manifests written by hand."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from librarian_async.context import Context
from librarian_async.db import catalog
from librarian_async.db.models import File, IncomingTransfer, Instance, OutgoingTransfer, Store
from librarian_async.enums import DeletionPolicy
from librarian_async.sneakernet.manifest import ManifestEntry, ManifestHeader, ManifestWriter

EXPORTED_ROOT = "/exported/drive/store"
WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def md5_of(content: bytes) -> str:
    return f"md5:::{hashlib.md5(content).hexdigest()}"


def sample(count: int, prefix: str = "obs") -> dict[str, bytes]:
    """``count`` small distinct files, every other one in a subdirectory."""
    return {
        f"{'night/' if index % 2 else ''}{prefix}-{index:04d}.dat": f"{prefix}{index}".encode() * 50
        for index in range(count)
    }


async def make_store(app: Context, root: Path, name: str, **flags: Any) -> Store:
    """A ``stores`` row whose staging and store areas are fresh directories under ``root``."""
    staging, area = root / name / "staging", root / name / "store"
    staging.mkdir(parents=True)
    area.mkdir(parents=True)
    row = Store(name=name, staging_path=str(staging), store_path=str(area), **flags)
    async with app.sessions.begin() as session:
        return await catalog.add_store(session, row)


async def catalogue(
    app: Context,
    store: Store,
    files: Mapping[str, bytes],
    *,
    policy: DeletionPolicy = DeletionPolicy.DISALLOWED,
    available: bool = True,
) -> None:
    """Write the files into the store area and catalogue each with one instance (bulk)."""
    created = app.now() - timedelta(minutes=5)
    file_rows, instance_rows = [], []
    for name, content in files.items():
        path = write_drive(Path(store.store_path), {name: content}) / name
        file_rows.append(
            {"name": name, "create_time": created, "size": len(content),
             "checksum": md5_of(content), "uploader": "tester", "source": "origin"}
        )  # fmt: skip
        instance_rows.append(
            {"path": str(path), "file_name": name, "store_id": store.id,
             "deletion_policy": policy, "created_time": created, "available": available}
        )  # fmt: skip
    async with app.sessions.begin() as session:
        await session.execute(insert(File), file_rows)
        await session.execute(insert(Instance), instance_rows)


def entry(name: str, content: bytes, transfer_id: int | None, **changes: Any) -> ManifestEntry:
    """The manifest entry of a file exported from ``EXPORTED_ROOT``."""
    fields: dict[str, Any] = {
        "name": name,
        "create_time": WHEN,
        "size": len(content),
        "checksum": md5_of(content),
        "uploader": "tester",
        "source": "origin",
        "instance_path": f"{EXPORTED_ROOT}/{name}",
        "deletion_policy": DeletionPolicy.DISALLOWED,
        "instance_create_time": WHEN,
        "instance_available": True,
        "outgoing_transfer_id": transfer_id,
    }
    return ManifestEntry(**(fields | changes))


def header(destination: str | None, source: str = "far") -> ManifestHeader:
    return ManifestHeader(
        format="librarian-manifest",
        version=1,
        librarian_name=source,
        store_name="drive",
        store_path=EXPORTED_ROOT,
        created=WHEN,
        destination=destination,
    )


def write_manifest(path: Path, head: ManifestHeader, entries: Sequence[ManifestEntry]) -> Path:
    writer = ManifestWriter(path, head)
    writer.add(list(entries))
    writer.commit()
    return path


def write_drive(root: Path, files: Mapping[str, bytes]) -> Path:
    """A drive's store area holding these files."""
    for name, content in files.items():
        path = root.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def shipment(files: Mapping[str, bytes], first_id: int = 100) -> list[ManifestEntry]:
    return [entry(name, data, first_id + i) for i, (name, data) in enumerate(files.items())]


async def incoming_rows(app: Context) -> list[IncomingTransfer]:
    async with app.sessions() as session:
        query = select(IncomingTransfer).order_by(IncomingTransfer.id)
        return list((await session.scalars(query)).all())


async def outgoing_rows(app: Context) -> list[OutgoingTransfer]:
    async with app.sessions() as session:
        query = select(OutgoingTransfer).order_by(OutgoingTransfer.id)
        return list((await session.scalars(query)).all())


async def store_row(app: Context, name: str) -> Store:
    async with app.sessions() as session:
        return await catalog.store_by_name(session, name)


async def instances_on(app: Context, store: Store) -> dict[str, bool]:
    """File name -> available, for the store's instances."""
    async with app.sessions() as session:
        query = select(Instance.file_name, Instance.available).where(Instance.store_id == store.id)
        return {name: available for name, available in (await session.execute(query)).all()}
