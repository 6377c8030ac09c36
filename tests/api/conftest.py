"""Fixtures for the API tests: the real app over ``httpx.ASGITransport``, a real database
(SQLite and PostgreSQL), real users with scrypt hashes and a store on real directories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from librarian_async.api import create_app
from librarian_async.context import Context
from librarian_async.db.models import Store

from .helpers import Disk, add_store, add_users


@pytest.fixture
def disk() -> Disk:
    return Disk()


@pytest.fixture
async def web(app: Context, disk: Disk) -> FastAPI:
    await add_users(app)
    return create_app(app, open_store=disk.open_store)


@pytest.fixture
async def client(web: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client


@pytest.fixture
async def store(app: Context, tmp_path: Path) -> Store:
    return await add_store(app, tmp_path / "stores")
