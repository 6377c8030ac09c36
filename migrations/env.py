"""Alembic environment: runs migrations through the async engine (SQLite or PostgreSQL).

The URL is taken, in order, from ``config.attributes["url"]`` (set by
``librarian_async.db.migrate``), then from the librarian settings (``LIBRARIAN_DATABASE_URL``
or the default SQLite file), so a plain ``alembic upgrade head`` at the repository root works.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from librarian_async.db.engine import create_engine
from librarian_async.db.models import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = config.attributes.get("url")
    if url:
        return str(url)
    from librarian_async.config import load_settings

    return load_settings().resolved_database_url


def run_with_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with_connection)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
