"""The migration chain and the models describe the same schema, on both backends."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from librarian_async.context import Context
from librarian_async.db.models import Base


def schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(app: Context) -> None:
    async with app.engine.connect() as connection:
        differences = await connection.run_sync(schema_differences)
    assert differences == []


async def test_every_model_table_exists_after_migration(app: Context) -> None:
    async with app.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert set(Base.metadata.tables) <= tables


async def test_rows_inserted_without_flags_get_the_server_defaults(app: Context) -> None:
    """A row written by an older client (no flag columns) must not read as disabled."""
    async with app.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO stores (name, staging_path, store_path) "
                "VALUES ('old', '/tmp/a', '/tmp/b')"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO librarians (name, url, port, authenticator) VALUES ('p', 'u', 1, 'x')"
            )
        )
        store = (await connection.execute(text("SELECT * FROM stores"))).mappings().one()
        peer = (await connection.execute(text("SELECT * FROM librarians"))).mappings().one()
    assert bool(store["enabled"]) is True
    assert bool(store["ingestable"]) is True
    assert store["report_full_fraction"] == 1.0
    assert store["kind"] == "local"
    assert bool(peer["transfers_enabled"]) is True
