"""Fixtures for the client tests: our real app, with real users and a store, served by a real
uvicorn server on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from librarian_async.api import create_app
from librarian_async.context import Context
from librarian_async.db import catalog, peers
from librarian_async.db.models import Store, User
from librarian_async.enums import AuthLevel
from librarian_async.security import hash_password

from .serving import served

USERS = {"peer-a": AuthLevel.READAPPEND, "reader": AuthLevel.READONLY}
_HASHES: dict[str, str] = {}


def password_of(user: str) -> str:
    return f"pw-{user}"


@pytest.fixture
async def receiver(app: Context, tmp_path: Path) -> Store:
    """The catalogue of the librarian under test: its users and one store."""
    async with app.sessions.begin() as session:
        for name, level in USERS.items():
            hashed = _HASHES.setdefault(name, hash_password(password_of(name)))
            await peers.add_user(
                session, User(username=name, password_hash=hashed, auth_level=level)
            )
        staging, area = tmp_path / "staging", tmp_path / "store"
        staging.mkdir()
        area.mkdir()
        store = Store(
            name="main",
            staging_path=str(staging),
            store_path=str(area),
            transfer_methods={"rsync": {"hostname": "receiver"}, "http": {"url": "http://r"}},
        )
        return await catalog.add_store(session, store)


@pytest.fixture
async def port(app: Context, receiver: Store) -> AsyncIterator[int]:
    async with served(create_app(app)) as port:
        yield port
