"""Shared fixtures: a fresh, migrated database per test on SQLite and on PostgreSQL.

Every database test runs twice, once per backend. The schema is migrated once per backend
and session into a template (a SQLite file, a PostgreSQL template database); each test
then gets its own copy. Without PostgreSQL the PostgreSQL runs are skipped, unless ``CI``
is set: then they fail, so CI cannot pass without having tested PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from librarian_async.config import Settings
from librarian_async.context import Context, open_context
from librarian_async.db.migrate import upgrade_sync

PG_ADMIN_DSN = os.environ.get(
    "LIBRARIAN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own LIBRARIAN_* settings."""
    for key in list(os.environ):
        if key.startswith("LIBRARIAN_") and key != "LIBRARIAN_TEST_PG_DSN":
            monkeypatch.delenv(key)


def pg_url(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def pg_admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def pg_admin_sync(sql: str) -> None:
    """``pg_admin`` for sync fixtures, which may be set up while a loop runs."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, pg_admin(sql)).result()


def _postgres_unavailable(error: Exception) -> None:
    message = f"PostgreSQL at {PG_ADMIN_DSN} is not usable: {error}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    name = f"la_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        pg_admin_sync(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as error:
        _postgres_unavailable(error)
    upgrade_sync(pg_url(name))
    yield name
    pg_admin_sync(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def absent_postgres_url() -> str:
    """The URL of a database that does not exist on the test PostgreSQL server."""
    return pg_url(f"la_absent_{uuid.uuid4().hex}")


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of the current backend that exists but was never migrated (no tables)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = f"la_empty_{uuid.uuid4().hex[:12]}"
    try:
        pg_admin_sync(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as error:
        _postgres_unavailable(error)
    try:
        yield pg_url(name)
    finally:
        pg_admin_sync(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def fresh_database(
    request: pytest.FixtureRequest, backend: str, path: Path
) -> AsyncIterator[str]:
    """A fresh, fully migrated database of ``backend`` (a SQLite file at ``path``)."""
    if backend == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"la_test_{uuid.uuid4().hex[:12]}"
    await pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield pg_url(name)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """The URL of a fresh, fully migrated database of the current backend."""
    async with fresh_database(request, backend, tmp_path / "librarian.sqlite3") as url:
        yield url


@pytest.fixture
async def second_database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """Another fresh database of the same backend, for a second librarian."""
    async with fresh_database(request, backend, tmp_path / "second.sqlite3") as url:
        yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(name="test-librarian", home=tmp_path / "home", database_url=database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Context]:
    async with open_context(settings) as context:
        yield context
