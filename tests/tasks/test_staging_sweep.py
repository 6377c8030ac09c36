"""The orphaned-staging sweep removes only old directories no live transfer points at."""

from __future__ import annotations

import os
import time
from pathlib import Path

from librarian_async.context import Context
from librarian_async.db.models import IncomingTransfer, Store
from librarian_async.enums import TransferStatus
from librarian_async.tasks.staging_sweep import sweep_orphaned_staging

from .receive_fixtures import receive

TWO_DAYS = 2 * 86400


def make_staging_dir(store: Store, name: str, *, age: float) -> Path:
    directory = Path(store.staging_path, name)
    (directory / "sub").mkdir(parents=True)
    (directory / "sub" / "bytes.dat").write_bytes(b"x" * 10)
    then = time.time() - age
    os.utime(directory, (then, then))
    return directory


async def add_transfer(app: Context, store: Store, directory: Path, status: TransferStatus) -> None:
    async with app.sessions.begin() as session:
        session.add(
            IncomingTransfer(
                status=status,
                uploader="peer",
                source="peer",
                upload_name="sub/bytes.dat",
                transfer_size=10,
                transfer_checksum="md5:::00",
                store_id=store.id,
                staging_path=str(directory),
                store_path="sub/bytes.dat",
            )
        )


def remaining(store: Store) -> set[str]:
    return {entry.name for entry in Path(store.staging_path).iterdir()}


async def test_only_old_orphans_are_removed(app: Context, store: Store) -> None:
    orphan = make_staging_dir(store, "orphan", age=TWO_DAYS)
    ended = make_staging_dir(store, "ended", age=TWO_DAYS)
    make_staging_dir(store, "live", age=TWO_DAYS)
    make_staging_dir(store, "fresh", age=0)
    await add_transfer(app, store, Path(store.staging_path, "live"), TransferStatus.STAGED)
    await add_transfer(app, store, ended, TransferStatus.FAILED)

    removed = await sweep_orphaned_staging(app)

    assert removed == 2
    assert remaining(store) == {"live", "fresh"}
    assert not orphan.exists()


async def test_disabled_store_is_left_alone(app: Context, store: Store) -> None:
    make_staging_dir(store, "orphan", age=TWO_DAYS)
    async with app.sessions.begin() as session:
        (await session.get(Store, store.id)).enabled = False  # type: ignore[union-attr]

    assert await sweep_orphaned_staging(app) == 0
    assert remaining(store) == {"orphan"}


async def test_receive_clone_sweeps_at_the_end_of_its_run(app: Context, store: Store) -> None:
    make_staging_dir(store, "orphan", age=TWO_DAYS)
    make_staging_dir(store, "fresh", age=0)

    result = await receive(app)

    assert result.report.counts["orphaned_staging_removed"] == 1
    assert remaining(store) == {"fresh"}
