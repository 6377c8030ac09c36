"""SneakerNet between two real librarians, on both backends (PROTOCOL §5).

The source fills two small drive stores with ``create_local_clone`` (the first fills up
and is disabled, the rest goes to the second), exports a manifest per drive for the
destination, and the drives are "shipped" (copied elsewhere). The destination ingests
each manifest from its copy of the drive and runs ``receive_clone``, which calls the
source back. A file damaged on the drive fails on both sides and a later network round
delivers it. A second test kills the ingest process with SIGKILL halfway and reruns it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from e2e.network import (
    DESTINATION_CONFIG,
    clone_round,
    digest,
    flip_first_byte,
    remote_copies,
    run_tasks,
    staging_entries,
    statuses,
    stored_digests,
)
from librarians import Librarian, add_store, librarian_pair
from sqlalchemy import select

from librarian_async.db.models import IncomingTransfer, OutgoingTransfer, Store
from librarian_async.enums import TransferStatus
from librarian_async.scheduler import RunResult
from librarian_async.sneakernet import ExportSummary, export_manifest, ingest_manifest
from librarian_async.sneakernet.ingest import BATCH_FILES
from librarian_async.tasks.staging_sweep import sweep_orphaned_staging

from .helpers import catalogue, instances_on, store_row

S = TransferStatus
DRIVE_BUDGET = 400 * 1024
SHM = "/dev/shm"
COUNT = 256
"""Files of the interrupted ingest: it is killed after 1.5 batches (each of BATCH_FILES)."""


def small_files(count: int, max_size: int, seed: int = 11) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        f"{f'night-{i % 3}/' if i % 2 else ''}obs-{i:04d}.dat": rng.randbytes(
            rng.randint(1, max_size)
        )
        for i in range(count)
    }


@pytest.fixture
def quiet_root(tmp_path: Path) -> Iterator[Path]:
    """A folder on a filesystem whose free space holds still (a small drive is simulated
    with ``report_full_fraction``, so others writing to the disk would resize it): the
    tmpfs at /dev/shm when there is one."""
    if not os.access(SHM, os.W_OK):
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(dir=SHM, prefix="librarian-test-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fraction_leaving(path: Path, free_bytes: int) -> float:
    """The report_full_fraction that leaves about ``free_bytes`` usable on the disk."""
    stats = os.statvfs(path)
    total, free = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
    if free < 4 * free_bytes:
        pytest.skip(f"needs {4 * free_bytes} free bytes on {path}")
    return 1.0 - (free - free_bytes) / total


async def fill_drives(source: Librarian, root: Path, *drives: str) -> RunResult:
    """Run create_local_clone once from ``store`` to the drives (disable_store_on_full)."""
    config = root / "fill.json"
    entry = {
        "task_name": "Drive filler", "every": "01:00:00", "soft_timeout": "00:30:00",
        "age_in_days": 7, "clone_from": "store", "clone_to": list(drives),
        "files_per_run": 4096, "disable_store_on_full": True,
    }  # fmt: skip
    config.write_text(json.dumps({"create_local_clone": [entry]}))
    [result] = await run_tasks(source, config, "Drive filler")
    return result


async def export(source: Librarian, drive: str, output: Path) -> ExportSummary:
    return await export_manifest(
        source.app, store_name=drive, output=output, destination="destination",
        disable_store=True, mark_unavailable=False,
    )  # fmt: skip


async def incoming_per_name(librarian: Librarian) -> dict[str, list[TransferStatus]]:
    async with librarian.app.sessions() as session:
        query = select(IncomingTransfer.store_path, IncomingTransfer.status)
        rows = (await session.execute(query.order_by(IncomingTransfer.id))).all()
    found: dict[str, list[TransferStatus]] = {}
    for name, status in rows:
        found.setdefault(name or "", []).append(status)
    return found


async def test_two_drives_shipped_and_ingested(
    database_url: str, second_database_url: str, tmp_path: Path, quiet_root: Path
) -> None:
    files = small_files(300, 8 * 1024)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        await catalogue(source.app, source.store, files)
        fraction = fraction_leaving(quiet_root, DRIVE_BUDGET)
        drive1 = await add_store(source.app, quiet_root, "drive1", {}, ingestable=False,
                                 report_full_fraction=fraction)  # fmt: skip
        drive2 = await add_store(source.app, source.root, "drive2", {}, ingestable=False)

        filled = await fill_drives(source, tmp_path, "drive1", "drive2")

        on_drives = [await instances_on(source.app, drive) for drive in (drive1, drive2)]
        assert filled.report.counts["cloned"] == 300, filled.report
        assert filled.report.counts["stores_disabled"] == 1
        assert on_drives[0] and on_drives[1] and set(on_drives[0]) | set(on_drives[1]) == set(files)
        assert (await store_row(source.app, "drive1")).enabled is False

        exported = [
            await export(source, d.name, tmp_path / f"{d.name}.json") for d in (drive1, drive2)
        ]
        assert [e.entries for e in exported] == [len(names) for names in on_drives]
        assert await statuses(source, OutgoingTransfer) == {S.ONGOING: 300}

        mounts = [ship(drive, tmp_path / "arrived" / drive.name) for drive in (drive1, drive2)]
        damaged = sorted(name for name in on_drives[1] if files[name])[0]
        flip_first_byte(mounts[1].joinpath(*damaged.split("/")))
        ingested = [
            await ingest_manifest(dest.app, tmp_path / f"{d.name}.json", mount)
            for d, mount in zip((drive1, drive2), mounts, strict=True)
        ]
        assert [len(i.failed) for i in ingested] == [0, 1]
        assert ingested[1].failed[0].startswith(f"{damaged}: damaged on the drive")
        assert sum(i.staged for i in ingested) == 299

        [received] = await run_tasks(dest, DESTINATION_CONFIG, "Clone receiver")

        assert received.report.counts["received"] == 299, received.report
        others = sorted(set(files) - {damaged})
        assert stored_digests(dest, others) == {name: digest(files[name]) for name in others}
        assert await statuses(source, OutgoingTransfer) == {S.COMPLETED: 299, S.FAILED: 1}
        assert await statuses(dest, IncomingTransfer) == {S.COMPLETED: 299, S.FAILED: 1}
        assert await remote_copies(source) == set(others)
        assert [(await store_row(source.app, d.name)).enabled for d in (drive1, drive2)] == [
            False,
            False,
        ]
        assert staging_entries(dest) == []

        results = await clone_round(source, dest)

        assert [r.outcome for r in results] == ["ok"] * 4, [r.report for r in results]
        assert stored_digests(dest, files) == {name: digest(data) for name, data in files.items()}
        assert await remote_copies(source) == set(files)
        assert await statuses(source, OutgoingTransfer) == {S.COMPLETED: 300, S.FAILED: 1}


def ship(drive: Store, mount: Path) -> Path:
    """The drive arrives: its store area, copied to where the destination mounts it."""
    shutil.copytree(drive.store_path, mount)
    return mount


def ingest_command(dest: Librarian, manifest: Path, mount: Path) -> list[str]:
    return [sys.executable, "-m", "librarian_async", "manifest", "ingest", str(manifest),
            "--store-root", str(mount)]  # fmt: skip


def environment_of(dest: Librarian) -> dict[str, str]:
    settings = dest.app.settings
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIBRARIAN_")}
    return base | {
        "LIBRARIAN_DATABASE_URL": settings.resolved_database_url,
        "LIBRARIAN_NAME": settings.name,
        "LIBRARIAN_HOME": str(settings.home),
    }


def staged_files(dest: Librarian) -> int:
    return sum(1 for path in Path(dest.store.staging_path).rglob("*") if path.is_file())


async def start_and_kill(command: list[str], env: dict[str, str], dest: Librarian, at: int) -> int:
    """Start the ingest, SIGKILL it once ``at`` files are in staging; its return code."""
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    for _ in range(12000):
        if staged_files(dest) >= at or process.returncode is not None:
            break
        await asyncio.sleep(0.005)
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
    await process.communicate()
    assert process.returncode is not None
    return process.returncode


async def test_an_ingest_killed_halfway_completes_on_rerun_without_duplicates(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    files = small_files(COUNT, 4 * 1024, seed=5)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        await catalogue(source.app, source.store, files)
        drive = await add_store(source.app, source.root, "drive", {}, ingestable=False)
        assert (await fill_drives(source, tmp_path, "drive")).report.counts["cloned"] == COUNT
        manifest = tmp_path / "drive.json"
        await export(source, "drive", manifest)
        command, env = ingest_command(dest, manifest, Path(drive.store_path)), environment_of(dest)

        code = await start_and_kill(command, env, dest, at=BATCH_FILES + BATCH_FILES // 2)

        assert code == -signal.SIGKILL, "the ingest ended before it could be killed"
        halfway = await statuses(dest, IncomingTransfer)
        assert sum(halfway.values()) > 0 and halfway.get(S.STAGED, 0) < COUNT
        rerun = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await rerun.communicate()
        assert rerun.returncode == 0, err.decode()
        assert "already staged by an earlier run" in out.decode()

        [received] = await run_tasks(dest, DESTINATION_CONFIG, "Clone receiver")

        assert received.outcome == "ok", received.report
        assert await incoming_per_name(dest) == {name: [S.COMPLETED] for name in files}
        assert stored_digests(dest, files) == {name: digest(data) for name, data in files.items()}
        assert await statuses(source, OutgoingTransfer) == {S.COMPLETED: COUNT}
        # A directory made just before the kill, whose transfer was never committed, is an
        # orphan (at most one batch of them); the staging sweep removes it.
        assert len(staging_entries(dest)) <= BATCH_FILES
        await sweep_orphaned_staging(dest.app, age=timedelta(0))
        assert staging_entries(dest) == []
