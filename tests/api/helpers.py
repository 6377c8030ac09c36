"""Shared pieces of the API tests: users, a store with a controllable disk, a client."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from librarian_async.context import Context
from librarian_async.db import catalog, peers
from librarian_async.db.models import (
    File,
    IncomingTransfer,
    Librarian,
    OutgoingTransfer,
    Store,
    User,
)
from librarian_async.enums import AuthLevel, TransferStatus
from librarian_async.security import hash_password
from librarian_async.storage.store import LocalStore, VfsStats

BLOCK = 4096
USERS = {
    "peer-a": AuthLevel.READAPPEND,
    "peer-b": AuthLevel.READAPPEND,
    "callback": AuthLevel.CALLBACK,
    "reader": AuthLevel.READONLY,
    "nobody": AuthLevel.NONE,
    "admin": AuthLevel.ADMIN,
}
METHODS = {
    "http": {"url": "http://receiver.example/api/v2/upload"},
    "rsync": {"hostname": "receiver.example"},
    "local": {"hostnames": ["receiver.example"]},
}


def password_of(user: str) -> str:
    return f"pw-{user}"


def auth(user: str) -> tuple[str, str]:
    return (user, password_of(user))


@functools.cache
def hash_of(password: str) -> str:
    """scrypt is slow on purpose: hash each test password once per session."""
    return hash_password(password)


def md5(content: bytes) -> str:
    return "md5:::" + hashlib.md5(content).hexdigest()


@dataclass
class Disk:
    """A disk whose free space a test sets (``None`` = the real disk)."""

    free: int | None = None

    def statvfs(self, path: Path) -> VfsStats:
        if self.free is None:
            return os.statvfs(path)
        return FakeStats(f_bavail=self.free // BLOCK, f_blocks=10**9, f_frsize=BLOCK)

    def open_store(self, row: Any) -> LocalStore:
        return LocalStore(
            name=row.name,
            staging_path=Path(row.staging_path),
            store_path=Path(row.store_path),
            report_full_fraction=row.report_full_fraction,
            statvfs=self.statvfs,
        )


@dataclass(frozen=True)
class FakeStats:
    f_bavail: int
    f_blocks: int
    f_frsize: int


async def add_users(app: Context) -> None:
    async with app.sessions.begin() as session:
        for name, level in USERS.items():
            user = User(username=name, password_hash=hash_of(password_of(name)), auth_level=level)
            await peers.add_user(session, user)


async def add_store(
    app: Context,
    root: Path,
    name: str = "main",
    methods: dict[str, Any] | None = None,
    **flags: Any,
) -> Store:
    staging, area = root / name / "staging", root / name / "store"
    staging.mkdir(parents=True)
    area.mkdir(parents=True)
    row = Store(
        name=name,
        staging_path=str(staging),
        store_path=str(area),
        transfer_methods=METHODS if methods is None else methods,
        **flags,
    )
    async with app.sessions.begin() as session:
        return await catalog.add_store(session, row)


async def add_file(app: Context, name: str, content: bytes = b"data") -> File:
    file = File(
        name=name,
        create_time=app.now() - timedelta(hours=1),
        size=len(content),
        checksum=md5(content),
        uploader="uploader",
        source="source",
    )
    async with app.sessions.begin() as session:
        session.add(file)
    return file


async def add_librarian(app: Context, name: str) -> Librarian:
    row = Librarian(name=name, url="http://127.0.0.1", port=1, authenticator="unused")
    async with app.sessions.begin() as session:
        return await peers.add_librarian(session, row)


async def add_incoming(
    app: Context,
    store: Store,
    *,
    name: str = "obs/a.uvh5",
    content: bytes = b"data",
    status: TransferStatus = TransferStatus.INITIATED,
    source: str = "peer-a",
    staging: Path | None = None,
) -> IncomingTransfer:
    row = IncomingTransfer(
        status=status,
        uploader=source,
        source=source,
        upload_name=name.rsplit("/", 1)[-1],
        store_path=name,
        transfer_size=len(content),
        transfer_checksum=md5(content),
        store_id=store.id,
        source_transfer_id=900,
        staging_path=None if staging is None else str(staging),
    )
    async with app.sessions.begin() as session:
        session.add(row)
    return row


async def add_outgoing(
    app: Context,
    file: File,
    *,
    destination: str = "callback",
    status: TransferStatus = TransferStatus.ONGOING,
) -> OutgoingTransfer:
    row = OutgoingTransfer(
        status=status,
        destination=destination,
        file_name=file.name,
        transfer_size=file.size,
        transfer_checksum=file.checksum,
    )
    async with app.sessions.begin() as session:
        session.add(row)
    return row


async def incoming_rows(app: Context) -> list[IncomingTransfer]:
    async with app.sessions() as session:
        query = select(IncomingTransfer).order_by(IncomingTransfer.id)
        return list((await session.scalars(query)).all())


async def status_of(app: Context, model: type[Any], transfer_id: int) -> TransferStatus:
    async with app.sessions() as session:
        row = await session.get_one(model, transfer_id)
        return TransferStatus(row.status)


def staging_entries(store: Store) -> list[Path]:
    return sorted(Path(store.staging_path).iterdir())


async def post(
    client: httpx.AsyncClient, path: str, body: Any, user: str | None = None
) -> httpx.Response:
    return await client.post(f"/api/v2/{path}", json=body, auth=auth(user) if user else None)
