"""create_local_clone, driven through the real Scheduler against real stores on both databases."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from librarian_async.config import CreateLocalCloneConfig, Settings
from librarian_async.context import Context
from librarian_async.db.models import CloneTransfer, CorruptFile, ErrorRecord, Instance, Store
from librarian_async.enums import DeletionPolicy, TransferStatus
from librarian_async.scheduler import RunResult, Scheduler
from librarian_async.storage.convert import local_store
from librarian_async.storage.store import temporary_sibling
from librarian_async.tasks import REGISTRY, create_local_clone

from .clone_fixtures import (
    SourceFile,
    add_files,
    add_sparse_file,
    area_path,
    instances_on,
    make_store,
    md5_of,
    md5_of_path,
    random_files,
    rows,
)

NOW = datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)
FINAL = {TransferStatus.COMPLETED, TransferStatus.FAILED}
REPO = Path(__file__).resolve().parents[2]


def entry(**overrides: Any) -> CreateLocalCloneConfig:
    values: dict[str, Any] = {
        "task_name": "cloner",
        "every": timedelta(hours=1),
        "age_in_days": 7,
        "clone_from": "source",
        "clone_to": "clone",
        "concurrency": 2,
    }
    return CreateLocalCloneConfig(**(values | overrides))


async def run_clone(
    app: Context, timeout_grace: float | None = None, **overrides: Any
) -> RunResult:
    scheduler = Scheduler(app, [entry(**overrides)], REGISTRY, timeout_grace=timeout_grace)
    [result] = await scheduler.run_once()
    return result


def counts(**values: int) -> dict[str, int]:
    """The full counts of a run: every key present, zero unless given."""
    return dict.fromkeys(create_local_clone.COUNTS, 0) | values


async def transfers_by_file(app: Context) -> dict[str, list[CloneTransfer]]:
    found: dict[str, list[CloneTransfer]] = {}
    for transfer in await rows(app, CloneTransfer):
        found.setdefault(transfer.file_name, []).append(transfer)
    return found


async def store_row(app: Context, store: Store) -> Store:
    async with app.sessions() as session:
        return await session.get_one(Store, store.id)


def area_listing(store: Store) -> list[str]:
    return os.listdir(store.store_path)


def area_exists(store: Store) -> bool:
    return os.path.exists(store.store_path)


def fraction_leaving(store: Store, free_bytes: int) -> float:
    """The report_full_fraction that leaves about ``free_bytes`` usable on the store's disk."""
    stats = os.statvfs(store.store_path)
    total, free = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
    if free < 2 * free_bytes:
        pytest.skip(f"needs {2 * free_bytes} free bytes on {store.store_path}")
    return 1.0 - (free - free_bytes) / total


def limit_of(statement: str, values: list[Any]) -> Any:
    """The outermost (last) LIMIT parameter: ``LIMIT $n`` (asyncpg) or the n-th ``?`` (SQLite)."""
    numbered = re.findall(r"LIMIT \$(\d+)", statement)
    if numbered:
        return values[int(numbered[-1]) - 1]
    return values[statement[: statement.rindex("LIMIT")].count("?")]


@pytest.fixture
async def source(app: Context, tmp_path: Path) -> Store:
    return await make_store(app, tmp_path, "source")


@pytest.fixture
async def clone(app: Context, tmp_path: Path) -> Store:
    return await make_store(app, tmp_path, "clone")


# --- the normal case -------------------------------------------------------------------------


async def test_clones_each_file_once_with_its_policy_and_a_completed_transfer(
    app: Context, source: Store, clone: Store
) -> None:
    allowed = await add_files(
        app,
        source,
        {"a.bin": os.urandom(10), "night/2459000/b.uvh5": os.urandom(3000)},
        policy=DeletionPolicy.ALLOWED,
    )
    kept = await add_files(app, source, {"empty.bin": b"", "big.bin": os.urandom(3 * 1024**2)})
    items = allowed + kept

    result = await run_clone(app)

    expected = counts(cloned=4, bytes=sum(item.size for item in items))
    assert (result.outcome, result.report.counts, result.report.problems) == ("ok", expected, [])
    found = await instances_on(app, clone)
    assert sorted(found) == sorted(item.name for item in items)
    for item in items:
        instance, target = found[item.name], area_path(clone, item.name)
        assert (instance.path, instance.available) == (str(target), True)
        assert target.read_bytes() == item.path.read_bytes()
        policy = DeletionPolicy.ALLOWED if item in allowed else DeletionPolicy.DISALLOWED
        assert instance.deletion_policy == policy
        assert instance.calculated_checksum == item.checksum
    for item in items:
        [transfer] = (await transfers_by_file(app))[item.name]
        assert transfer.status == TransferStatus.COMPLETED
        assert transfer.destination_instance_id == found[item.name].id
        assert (transfer.source_instance_id, transfer.source_store_id) == (
            item.instance_id,
            source.id,
        )
        assert transfer.destination_store_id == clone.id
        assert transfer.end_time is not None and transfer.failure_reason is None
    assert local_store(clone).leftover_temporaries() == []


async def test_rerun_does_nothing(app: Context, source: Store, clone: Store) -> None:
    await add_files(app, source, random_files("f", 3, 100))
    await run_clone(app)

    again = await run_clone(app)

    assert (again.outcome, again.report.counts) == ("ok", counts())
    assert len(await rows(app, CloneTransfer)) == 3
    assert len(await instances_on(app, clone)) == 3
    assert len(await instances_on(app, source)) == 3


@pytest.mark.parametrize("disable_store_on_full", [False, True])
async def test_full_first_destination_sends_every_file_to_the_next(
    app: Context, source: Store, tmp_path: Path, disable_store_on_full: bool
) -> None:
    full = await make_store(app, tmp_path, "full", report_full_fraction=1e-9)
    roomy = await make_store(app, tmp_path, "roomy")
    await add_files(app, source, random_files("f", 3, 100))

    result = await run_clone(
        app, clone_to=["full", "roomy"], disable_store_on_full=disable_store_on_full
    )

    disabled = int(disable_store_on_full)
    assert result.report.counts == counts(cloned=3, bytes=300, stores_disabled=disabled)
    assert result.outcome == "ok"
    assert len(await instances_on(app, roomy)) == 3
    assert await instances_on(app, full) == {}
    assert area_listing(full) == []
    assert {t.destination_store_id for t in await rows(app, CloneTransfer)} == {roomy.id}
    assert (await store_row(app, full)).enabled is not disable_store_on_full


async def test_destination_with_room_for_small_files_takes_them_and_skips_the_big_one(
    app: Context, source: Store, tmp_path: Path
) -> None:
    clone = await make_store(app, tmp_path, "clone")
    async with app.sessions.begin() as session:
        row = await session.get_one(Store, clone.id)
        row.report_full_fraction = fraction_leaving(clone, 4 * 1024**3)
    big = await add_sparse_file(app, source, "huge.bin", 64 * 1024**3)
    small = await add_files(app, source, random_files("small", 2, 4096))

    result = await run_clone(app)

    assert result.report.counts == counts(cloned=2, bytes=8192, skipped_full=1)
    assert result.outcome == "problems"
    assert result.report.problems == ["1 files skipped: no destination had room for them"]
    assert sorted(await instances_on(app, clone)) == [item.name for item in small]
    assert big.name not in await transfers_by_file(app)
    assert (await store_row(app, clone)).enabled is True


async def test_disable_store_on_full_disables_the_destination_after_the_small_files(
    app: Context, source: Store, tmp_path: Path
) -> None:
    clone = await make_store(app, tmp_path, "clone")
    async with app.sessions.begin() as session:
        row = await session.get_one(Store, clone.id)
        row.report_full_fraction = fraction_leaving(clone, 4 * 1024**3)
    small = await add_files(app, source, random_files("small", 2, 4096))
    await add_sparse_file(app, source, "huge.bin", 64 * 1024**3)
    late = await add_files(app, source, {"late.bin": b"late"})

    result = await run_clone(app, disable_store_on_full=True)

    assert result.report.counts == counts(cloned=2, bytes=8192, skipped_full=1, stores_disabled=1)
    assert sorted(await instances_on(app, clone)) == [item.name for item in small]
    assert (await store_row(app, clone)).enabled is False
    # Every destination is now off while files wait: the operator must bring another one.
    assert result.outcome == "problems"
    assert result.report.problems == [
        "no enabled, available destination with room among clone",
        "1 files skipped: no destination had room for them",
    ]

    again = await run_clone(app, disable_store_on_full=True)

    assert again.outcome == "problems"
    assert again.report.counts == counts()
    assert late[0].name not in await transfers_by_file(app)
    assert len(await rows(app, CloneTransfer)) == 2


async def test_disabled_and_unavailable_destinations_are_not_used(
    app: Context, source: Store, tmp_path: Path
) -> None:
    off = await make_store(app, tmp_path, "off", enabled=False)
    gone = await make_store(app, tmp_path, "gone")
    shutil.rmtree(gone.store_path)
    usable = await make_store(app, tmp_path, "usable")
    await add_files(app, source, random_files("f", 2, 10))

    result = await run_clone(app, clone_to=["off", "gone", "usable"])

    assert (result.outcome, result.report.counts) == ("ok", counts(cloned=2, bytes=20))
    assert len(await instances_on(app, usable)) == 2
    assert await instances_on(app, off) == await instances_on(app, gone) == {}
    assert area_listing(off) == []
    assert not area_exists(gone)

    stuck = await run_clone(app, clone_to=["off", "gone"])

    assert stuck.outcome == "problems"
    assert "no enabled, available destination" in stuck.report.problems[0]
    assert len(await rows(app, CloneTransfer)) == 2


# --- bad sources -------------------------------------------------------------------------------


async def test_corrupt_source_is_recorded_and_not_cloned(
    app: Context, source: Store, clone: Store
) -> None:
    [good] = await add_files(app, source, {"good.bin": b"g" * 20})
    content = os.urandom(5000)
    [bad] = await add_files(
        app, source, {"dir/bad.bin": content}, checksums={"dir/bad.bin": md5_of(b"other")}
    )

    result = await run_clone(app)

    assert result.outcome == "problems"
    assert result.report.counts == counts(cloned=1, corrupt=1, bytes=20)
    assert any("dir/bad.bin" in problem for problem in result.report.problems)
    [row] = await rows(app, CorruptFile)
    assert (row.file_name, row.instance_id, row.instance_path) == (
        bad.name,
        bad.instance_id,
        str(bad.path),
    )
    assert (row.checksum, row.computed_checksum, row.count) == (bad.checksum, md5_of(content), 1)
    assert sorted(await instances_on(app, clone)) == [good.name]
    assert not area_path(clone, bad.name).exists()
    assert local_store(clone).leftover_temporaries() == []
    [transfer] = (await transfers_by_file(app))[bad.name]
    assert (transfer.status, transfer.destination_instance_id) == (TransferStatus.FAILED, None)
    assert "corrupt" in (transfer.failure_reason or "")

    again = await run_clone(app)

    assert (again.outcome, again.report.counts) == ("ok", counts())  # known corrupt: not retried


async def test_missing_source_is_an_error_row_and_a_failed_transfer(
    app: Context, source: Store, clone: Store
) -> None:
    [gone, present] = await add_files(app, source, {"runs/gone.bin": b"x", "here.bin": b"yy"})
    gone.path.unlink()

    result = await run_clone(app)

    assert result.outcome == "problems"
    assert result.report.counts == counts(cloned=1, missing=1, bytes=2)
    [error] = await rows(app, ErrorRecord)
    assert (error.category, error.caller) == ("missing_file", "cloner")
    assert "runs/gone.bin" in error.message
    assert await rows(app, CorruptFile) == []
    assert sorted(await instances_on(app, clone)) == [present.name]
    [transfer] = (await transfers_by_file(app))[gone.name]
    assert transfer.status == TransferStatus.FAILED
    assert "missing" in (transfer.failure_reason or "")


# --- limits --------------------------------------------------------------------------------------


async def test_oldest_files_are_cloned_first(app: Context, source: Store, clone: Store) -> None:
    now = app.now()
    await add_files(app, source, {"newer.bin": b"n"}, created=now - timedelta(hours=1))
    await add_files(app, source, {"older.bin": b"o"}, created=now - timedelta(hours=2))

    result = await run_clone(app, files_per_run=1)

    assert result.report.counts["cloned"] == 1
    assert sorted(await instances_on(app, clone)) == ["older.bin"]


async def test_files_per_run_limits_each_run_in_instance_order(
    app: Context, source: Store, clone: Store
) -> None:
    items = await add_files(app, source, random_files("f", 5, 10))

    cloned = []
    for expected in (2, 2, 1, 0):
        result = await run_clone(app, files_per_run=2)
        assert result.report.counts["cloned"] == expected
        cloned.append(sorted(await instances_on(app, clone)))

    names = [item.name for item in items]
    assert cloned == [names[:2], names[:4], names, names]


async def test_pages_are_limited_in_sql_and_batches_cover_every_file(
    app: Context, source: Store, clone: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(create_local_clone, "PAGE_SIZE", 4)
    monkeypatch.setattr(create_local_clone, "BATCH_FILES", 3)
    limits: list[Any] = []

    def record_limit(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM instances JOIN files" in statement and "LIMIT" in statement:
            limits.append(limit_of(statement, list(parameters)))

    event.listen(app.engine.sync_engine, "before_cursor_execute", record_limit)
    items = await add_files(app, source, random_files("f", 10, 100))

    result = await run_clone(app, files_per_run=7, concurrency=3)

    assert result.report.counts == counts(cloned=7, bytes=700)
    assert limits == [4, 3]
    assert sorted(await instances_on(app, clone)) == [item.name for item in items[:7]]


async def test_age_window_includes_its_edge_and_excludes_older_instances(
    app: Context, source: Store, clone: Store
) -> None:
    app.now = lambda: NOW
    edge = NOW - timedelta(days=7)
    [inside] = await add_files(app, source, {"edge.bin": b"e"}, created=edge)
    await add_files(app, source, {"older.bin": b"o"}, created=edge - timedelta(microseconds=1))

    result = await run_clone(app)

    assert result.report.counts == counts(cloned=1, bytes=1)
    assert sorted(await instances_on(app, clone)) == [inside.name]


async def test_spent_budget_starts_nothing(app: Context, source: Store, clone: Store) -> None:
    await add_files(app, source, random_files("f", 3, 10))

    result = await run_clone(app, soft_timeout=timedelta(microseconds=1))

    assert result.report.counts.get("cloned", 0) == 0
    assert await rows(app, CloneTransfer) == []
    assert await instances_on(app, clone) == {}


async def test_run_cut_short_mid_copy_leaves_no_partial_file_and_only_final_rows(
    app: Context, source: Store, clone: Store
) -> None:
    huge = await add_sparse_file(app, source, "huge.bin", 4 * 1024**3)

    # The copy must have started before the budget is spent (a run whose budget runs out
    # first takes no file and ends "ok": seen once under load with 0.3 s), and cannot end
    # within it: hashing 4 GiB takes 4.5 s or more at MD5's ~900 MB/s.
    result = await run_clone(app, timeout_grace=0.1, soft_timeout=timedelta(seconds=1))

    assert result.outcome == "timed_out"
    [transfer] = await rows(app, CloneTransfer)
    assert transfer.status == TransferStatus.FAILED
    assert "not attempted" in (transfer.failure_reason or "")
    assert not area_path(clone, huge.name).exists()
    assert local_store(clone).leftover_temporaries() == []
    assert await instances_on(app, clone) == {}


# --- leftovers of a crash -----------------------------------------------------------------------


async def test_identical_file_left_at_the_final_path_is_adopted(
    app: Context, source: Store, clone: Store
) -> None:
    [item] = await add_files(app, source, {"d/left.bin": os.urandom(2000)})
    target = area_path(clone, item.name)
    target.parent.mkdir(parents=True)
    shutil.copyfile(item.path, target)

    result = await run_clone(app)

    assert (result.outcome, result.report.counts) == ("ok", counts(cloned=1, bytes=2000))
    assert (await instances_on(app, clone))[item.name].path == str(target)
    assert target.read_bytes() == item.path.read_bytes()
    assert local_store(clone).leftover_temporaries() == []


async def test_different_file_at_the_final_path_is_kept_and_the_clone_fails(
    app: Context, source: Store, clone: Store
) -> None:
    [item] = await add_files(app, source, {"taken.bin": b"ours"})
    target = area_path(clone, item.name)
    target.write_bytes(b"theirs")

    result = await run_clone(app)

    assert result.outcome == "problems"
    assert result.report.counts == counts(failed=1)
    assert target.read_bytes() == b"theirs"
    assert await instances_on(app, clone) == {}
    [transfer] = await rows(app, CloneTransfer)
    assert transfer.status == TransferStatus.FAILED
    assert "different content" in (transfer.failure_reason or "")


async def test_dead_run_leftovers_are_failed_swept_and_the_clone_completes(
    app: Context, source: Store, clone: Store
) -> None:
    [item] = await add_files(app, source, {"d/big.bin": os.urandom(2 * 1024**2)})
    target = local_store(clone).resolve_in_store(item.name)
    target.parent.mkdir(parents=True)
    partial = temporary_sibling(target)
    partial.write_bytes(item.path.read_bytes()[:1000])
    async with app.sessions.begin() as session:
        session.add(
            CloneTransfer(
                status=TransferStatus.ONGOING,
                file_name=item.name,
                source_store_id=source.id,
                destination_store_id=clone.id,
                source_instance_id=item.instance_id,
                start_time=app.now() - timedelta(minutes=5),
            )
        )
    assert not target.exists()

    result = await run_clone(app)

    assert (result.outcome, result.report.counts["cloned"]) == ("ok", 1)
    [stale, done] = await rows(app, CloneTransfer)
    assert (stale.status, stale.failure_reason) == (
        TransferStatus.FAILED,
        create_local_clone.INTERRUPTED,
    )
    assert done.status == TransferStatus.COMPLETED
    assert not partial.exists()
    assert local_store(clone).leftover_temporaries() == []
    assert target.read_bytes() == item.path.read_bytes()


# --- a process killed at any point ----------------------------------------------------------


def write_config(path: Path) -> Path:
    config = {
        "create_local_clone": [
            {
                "task_name": "crash cloner",
                "every": "01:00:00",
                "age_in_days": 7,
                "clone_from": "source",
                "clone_to": ["clone"],
                "concurrency": 2,
            }
        ]
    }
    path.write_text(json.dumps(config))
    return path


def cli_environment(settings: Settings) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LIBRARIAN_")}
    environment["LIBRARIAN_DATABASE_URL"] = settings.resolved_database_url
    environment["LIBRARIAN_HOME"] = str(settings.home)
    return environment


async def start_cli(config: Path, environment: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "librarian_async",
        "run",
        "--once",
        "--config",
        str(config),
        env=environment,
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def kill_after(process: asyncio.subprocess.Process, delay: float) -> bool:
    """SIGKILL the process after ``delay`` seconds; False if it had finished by then."""
    try:
        await asyncio.wait_for(process.wait(), timeout=delay)
    except TimeoutError:
        try:
            process.kill()
        except ProcessLookupError:  # it ended between the timeout and the kill
            return False
        await process.wait()
        return True
    return False


async def wait_for_new_temporary(
    clone: Store, process: asyncio.subprocess.Process, old: set[Path]
) -> None:
    """Return once this process has a copy in flight in the clone store (or has ended)."""
    disk = local_store(clone)
    for _ in range(30_000):  # a minute at most
        if process.returncode is not None or set(disk.leftover_temporaries()) - old:
            return
        await asyncio.sleep(0.002)


async def test_killed_runs_then_a_rerun_leave_exactly_one_verified_copy_of_each_file(
    app: Context, settings: Settings, source: Store, clone: Store, tmp_path: Path
) -> None:
    items = await add_files(app, source, random_files("run/f", 8, 32 * 1024**2))
    config, environment = write_config(tmp_path / "tasks.json"), cli_environment(settings)
    killed_mid_copy = 0
    # First from the first copy of a run (a fast machine clones everything within a second,
    # so these come before any kill that may let a run finish), then from the start: in
    # start-up, then anywhere.
    for delay in (0.0, 0.05, 0.15, 0.4):
        old = set(local_store(clone).leftover_temporaries())
        process = await start_cli(config, environment)
        await wait_for_new_temporary(clone, process, old)
        killed_mid_copy += await kill_after(process, delay)
    for delay in (0.05, 0.6, 1.2):
        await kill_after(await start_cli(config, environment), delay)

    final = await start_cli(config, environment)
    assert await asyncio.wait_for(final.wait(), timeout=120) == 0

    assert killed_mid_copy > 0
    await assert_one_verified_copy_each(app, clone, items)


async def assert_one_verified_copy_each(
    app: Context, clone: Store, items: list[SourceFile]
) -> None:
    async with app.sessions() as session:
        on_clone = (
            await session.scalars(select(Instance).where(Instance.store_id == clone.id))
        ).all()
    assert sorted(instance.file_name for instance in on_clone) == [item.name for item in items]
    for item in items:
        assert md5_of_path(area_path(clone, item.name)) == item.checksum
    assert local_store(clone).leftover_temporaries() == []
    transfers = await rows(app, CloneTransfer)
    assert {transfer.status for transfer in transfers} <= FINAL
    completed = [t.file_name for t in transfers if t.status == TransferStatus.COMPLETED]
    assert sorted(completed) == [item.name for item in items]
