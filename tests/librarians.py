"""Two real librarians for end-to-end tests: each with its own database, its own store on
real directories and its own uvicorn server on a loopback port, registered with each other.

The source authenticates to the destination as a user named after itself, and the other way
round (PROTOCOL §1: the receiver calls the sender back as a user named after the receiver).
``Librarian.add_file`` puts real bytes into a store through the same path as ``file add``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from pydantic import SecretStr
from remote.serving import Server

from librarian_async.api import create_app
from librarian_async.config import Settings
from librarian_async.context import Context, open_context
from librarian_async.db import catalog, peers
from librarian_async.db.models import Librarian as LibrarianRow
from librarian_async.db.models import Store, User
from librarian_async.enums import AuthLevel
from librarian_async.ingest import IngestOptions, add_local_file
from librarian_async.security import encrypt_secret, hash_password
from librarian_async.storage.checksum import FileDigest
from librarian_async.storage.convert import local_store

KEY = Fernet.generate_key().decode()
LOOPBACK = "http://127.0.0.1"


@functools.cache
def password_hash(password: str) -> str:
    """scrypt is slow on purpose: hash each test password once per session."""
    return hash_password(password)


def password_of(user: str) -> str:
    return f"pw-{user}"


@dataclass
class Librarian:
    """One running librarian: its context, its main store and the port it serves on."""

    name: str
    app: Context
    store: Store
    root: Path
    port: int = 0
    server: Server | None = None

    async def start_serving(self) -> None:
        """Serve the librarian's app (again, on the same port once it has one)."""
        self.server = Server(create_app(self.app), self.port)
        self.port = await self.server.start()

    async def stop_serving(self, *, abrupt: bool = False) -> None:
        """Stop the server; ``abrupt``: as a crash looks to a peer (connections reset)."""
        if self.server is not None:
            await self.server.stop(abrupt=abrupt)
            self.server = None

    async def add_file(self, name: str, content: bytes, store: Store | None = None) -> FileDigest:
        """Write ``content`` to an outside file and ingest it as ``name``."""
        outside = write_outside(self.root / "outside" / name, content)
        row = store or self.store
        digest = await add_local_file(
            self.app, row, local_store(row), outside, name, IngestOptions(uploader="tester")
        )
        outside.unlink()
        return digest

    def stored(self, name: str, store: Store | None = None) -> Path:
        return Path((store or self.store).store_path, *name.split("/"))


def write_outside(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def make_directories(*paths: Path) -> None:
    for path in paths:
        path.mkdir(parents=True)


def settings_for(name: str, database_url: str, root: Path) -> Settings:
    return Settings(
        name=name,
        home=root / "home",
        database_url=database_url,
        encryption_key=SecretStr(KEY),
    )


async def add_store(
    app: Context, root: Path, name: str, methods: Mapping[str, Any], **flags: Any
) -> Store:
    staging, area = root / name / "staging", root / name / "store"
    make_directories(staging, area)
    row = Store(
        name=name,
        staging_path=str(staging),
        store_path=str(area),
        transfer_methods=dict(methods),
        **flags,
    )
    async with app.sessions.begin() as session:
        return await catalog.add_store(session, row)


async def register(caller: Librarian, callee: Librarian, level: AuthLevel) -> None:
    """Let ``caller`` call ``callee``: a peer row at the caller, a user at the callee."""
    authenticator = f"{caller.name}:{password_of(caller.name)}"
    async with caller.app.sessions.begin() as session:
        row = LibrarianRow(
            name=callee.name,
            url=LOOPBACK,
            port=callee.port,
            authenticator=encrypt_secret(KEY.encode(), authenticator),
        )
        await peers.add_librarian(session, row)
    async with callee.app.sessions.begin() as session:
        user = User(
            username=caller.name,
            password_hash=password_hash(password_of(caller.name)),
            auth_level=level,
        )
        await peers.add_user(session, user)


@asynccontextmanager
async def running_librarian(
    name: str, database_url: str, root: Path, methods: Mapping[str, Any]
) -> AsyncIterator[Librarian]:
    """A librarian with one store named ``store``, served until the block ends."""
    async with AsyncExitStack() as stack:
        app = await stack.enter_async_context(open_context(settings_for(name, database_url, root)))
        store = await add_store(app, root, "store", methods)
        librarian = Librarian(name, app, store, root)
        await librarian.start_serving()
        try:
            yield librarian
        finally:
            await librarian.stop_serving()


def all_methods() -> dict[str, Any]:
    """Every method, offered to a sender on this very host."""
    host = os.uname().nodename
    return {"http": {}, "local": {"hostnames": [host]}, "rsync": {"hostname": host}}


@asynccontextmanager
async def librarian_pair(
    source_url: str,
    destination_url: str,
    root: Path,
    destination_methods: Mapping[str, Any] | None = None,
) -> AsyncIterator[tuple[Librarian, Librarian]]:
    """``source`` and ``destination``, registered with each other, both serving."""
    methods = all_methods() if destination_methods is None else destination_methods
    async with (
        running_librarian("source", source_url, root / "source", all_methods()) as source,
        running_librarian("destination", destination_url, root / "destination", methods) as dest,
    ):
        await register(source, dest, AuthLevel.READAPPEND)
        await register(dest, source, AuthLevel.CALLBACK)
        yield source, dest
