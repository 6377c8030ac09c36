"""The demo's two librarians: folders, databases, stores, servers and accounts.

Each librarian is a :class:`Site`: its own LIBRARIAN_HOME folder, its own SQLite database
(migrated like ``db upgrade`` does), its own stores, and its own API served on a loopback
port, all in this one process. :func:`introduce` then registers each with the other exactly
as an operator would with ``user add`` and ``librarian add``.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from pydantic import SecretStr

from librarian_async.api import create_app
from librarian_async.config import Settings
from librarian_async.context import Context, open_context
from librarian_async.db import catalog, peers
from librarian_async.db.migrate import upgrade
from librarian_async.db.models import Librarian, Store, User
from librarian_async.demo.serving import LOOPBACK, LoopbackServer
from librarian_async.enums import AuthLevel
from librarian_async.errors import ConfigError, LibrarianError
from librarian_async.remote.ping import check_peer
from librarian_async.security import encrypt_secret, hash_password

SOURCE, DESTINATION = "source", "destination"  # the names the seed's configurations use
MARKER = ".librarian-async-demo"
"""The file that marks a folder as the demo's own, so that a rerun may remove it."""


class DemoFailed(LibrarianError):
    """A step of the demo did not do what it should; the message says which and why."""


@dataclass
class Site:
    """One running librarian of the demo."""

    name: str
    app: Context
    home: Path
    server: LoopbackServer

    @property
    def url(self) -> str:
        return self.server.url

    def store_root(self, store: str) -> Path:
        return self.home / "stores" / store


@dataclass
class Demo:
    """The two librarians and what the steps did to them."""

    folder: Path
    source: Site
    destination: Site
    by_network: dict[str, int] = field(default_factory=dict)
    by_drive: dict[str, int] = field(default_factory=dict)
    damaged: str = ""


def prepare_folder(folder: Path) -> Path:
    """Start from an empty ``folder``: remove a previous demo's, never anything else.
    Returns it as an absolute path."""
    folder = folder.absolute()
    if (folder / MARKER).is_file():
        shutil.rmtree(folder)
    elif folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(
            f"--home {folder}: exists and was not made by `demo`; choose another folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by `librarian-async demo`; its next run replaces it\n")
    return folder


def site_settings(base: Settings, name: str, home: Path, key: bytes) -> Settings:
    """``base`` (timeouts, log level) with the demo's own name, home, SQLite file and key."""
    return base.model_copy(
        update={
            "name": name,
            "home": home,
            "database_url": f"sqlite+aiosqlite:///{home / 'librarian.sqlite3'}",
            "background_config": None,
            "encryption_key": SecretStr(key.decode()),
            "encryption_key_file": None,
        }
    )


@asynccontextmanager
async def open_demo(settings: Settings, folder: Path) -> AsyncIterator[Demo]:
    """Both librarians, each migrated and serving, sharing a fresh random Fernet key."""
    key = Fernet.generate_key()
    source_settings = site_settings(settings, SOURCE, folder / SOURCE, key)
    destination_settings = site_settings(settings, DESTINATION, folder / DESTINATION, key)
    async with open_site(source_settings) as source, open_site(destination_settings) as dest:
        yield Demo(folder, source, dest)


@asynccontextmanager
async def open_site(settings: Settings) -> AsyncIterator[Site]:
    """Create and migrate the database, then serve the API until the block ends."""
    settings.home.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.resolved_database_url)
    async with open_context(settings) as app:
        server = LoopbackServer(create_app(app))
        await server.start()
        try:
            yield Site(settings.name, app, settings.home, server)
        finally:
            await server.stop()


async def add_store(
    site: Site, name: str, *, ingestable: bool = True, methods: Mapping[str, Any] | None = None
) -> Store:
    """Like ``store add NAME --create``: a staging and a store area under the site's home."""
    root = site.store_root(name)
    for area in ("staging", "store"):
        (root / area).mkdir(parents=True)
    row = Store(
        name=name,
        staging_path=str(root / "staging"),
        store_path=str(root / "store"),
        ingestable=ingestable,
        transfer_methods=dict(methods or {}),
    )
    async with site.app.sessions.begin() as session:
        return await catalog.add_store(session, row)


async def introduce(caller: Site, callee: Site, level: AuthLevel) -> None:
    """Let ``caller`` call ``callee``: ``user add`` at the callee, ``librarian add`` at the
    caller (credentials encrypted with the caller's key), then a ``ping`` to prove it."""
    password = secrets.token_urlsafe(16)
    digest = await asyncio.to_thread(hash_password, password)  # scrypt: slow on purpose
    user = User(username=caller.name, password_hash=digest, auth_level=level)
    async with callee.app.sessions.begin() as session:
        await peers.add_user(session, user)
    authenticator = f"{caller.name}:{password}"
    row = Librarian(
        name=callee.name,
        url=f"http://{LOOPBACK}",
        port=callee.server.port,
        authenticator=encrypt_secret(caller.app.settings.load_encryption_key(), authenticator),
        transfers_enabled=True,
    )
    async with caller.app.sessions.begin() as session:
        await peers.add_librarian(session, row)
    await check_peer(row.url, row.port, authenticator, expected_name=callee.name)


async def set_transfers(site: Site, peer: str, *, enabled: bool) -> None:
    """Like ``librarian enable-transfers|disable-transfers PEER``."""
    async with site.app.sessions.begin() as session:
        row = await peers.librarian_by_name(session, peer)
        row.transfers_enabled = enabled
