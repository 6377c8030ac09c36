"""check_integrity, driven through the real Scheduler against real files and both databases."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, select

from librarian_async.config import CheckIntegrityConfig
from librarian_async.context import Context
from librarian_async.db.models import CorruptFile, ErrorRecord, TaskRun
from librarian_async.scheduler import RunResult, Scheduler
from librarian_async.tasks import REGISTRY, check_integrity

from .conftest import StoreFiles, checksum_of

Row = TypeVar("Row", CorruptFile, ErrorRecord, TaskRun)
NOW = datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)
BIG_SIZE = 512 * 1024**2


def entry(**overrides: Any) -> CheckIntegrityConfig:
    values: dict[str, Any] = {
        "task_name": "integrity",
        "every": timedelta(hours=1),
        "store_name": "main",
        "age_in_days": 7,
        "concurrency": 2,
    }
    return CheckIntegrityConfig(**(values | overrides))


async def run_check(
    app: Context, timeout_grace: float | None = None, **overrides: Any
) -> RunResult:
    scheduler = Scheduler(app, [entry(**overrides)], REGISTRY, timeout_grace=timeout_grace)
    [result] = await scheduler.run_once()
    return result


async def rows(app: Context, model: type[Row]) -> list[Row]:
    async with app.sessions() as session:
        return list((await session.scalars(select(model).order_by(model.id))).all())


async def error_rows(app: Context, category: str) -> list[ErrorRecord]:
    return [row for row in await rows(app, ErrorRecord) if row.category == category]


def flip_byte(path: Path, offset: int = 0) -> bytes:
    """Invert one byte in place; return the new content."""
    content = bytearray(path.read_bytes())
    content[offset] ^= 0xFF
    path.write_bytes(content)
    return bytes(content)


def counts(**values: int) -> dict[str, int]:
    """The full counts of a run: every key present, zero unless given."""
    return {key: 0 for key in check_integrity.COUNTS} | values


async def test_intact_files_are_ok_with_exact_counts(app: Context, files: StoreFiles) -> None:
    sizes = {"a.bin": 10, "dir/b.bin": 3000, "dir/sub/empty.bin": 0}
    for name, size in sizes.items():
        await files.add(name, os.urandom(size))

    result = await run_check(app)

    expected = counts(checked=3, ok=3, bytes=sum(sizes.values()))
    assert (result.outcome, result.report.counts, result.report.problems) == ("ok", expected, [])
    [run] = await rows(app, TaskRun)
    assert (run.task_type, run.outcome, run.counts) == ("check_integrity", "ok", expected)
    assert await rows(app, CorruptFile) == []
    assert await rows(app, ErrorRecord) == []


async def test_flipped_byte_is_corrupt_and_a_rerun_bumps_the_count(
    app: Context, files: StoreFiles
) -> None:
    await files.add("fine.bin")
    bad = await files.add("data/bad.bin", os.urandom(4096))
    damaged = flip_byte(bad.path, 1234)

    first = await run_check(app)

    assert first.outcome == "problems"
    assert first.report.counts == counts(checked=2, ok=1, corrupt=1, bytes=4096 + 800)
    assert len(first.report.problems) == 1
    assert "data/bad.bin" in first.report.problems[0]
    [row] = await rows(app, CorruptFile)
    assert (row.file_name, row.instance_id, row.instance_path) == (
        bad.name,
        bad.instance_id,
        str(bad.path),
    )
    assert (row.checksum, row.size, row.count) == (bad.checksum, 4096, 1)
    assert row.computed_checksum == checksum_of(damaged)

    second = await run_check(app)

    assert second.outcome == "problems"
    [row] = await rows(app, CorruptFile)
    assert (row.instance_id, row.count) == (bad.instance_id, 2)
    assert [run.outcome for run in await rows(app, TaskRun)] == ["problems", "problems"]
    assert await rows(app, ErrorRecord) == []


async def test_missing_file_is_an_error_row_not_a_corruption(
    app: Context, files: StoreFiles
) -> None:
    await files.add("present.bin", b"x" * 50)
    gone = await files.add("runs/gone.bin")
    gone.path.unlink()

    result = await run_check(app)

    assert result.outcome == "problems"
    assert result.report.counts == counts(checked=2, ok=1, missing=1, bytes=50)
    assert any("runs/gone.bin" in line for line in result.report.problems)
    [error] = await rows(app, ErrorRecord)
    assert (error.category, error.caller) == ("missing_file", "integrity")
    assert "runs/gone.bin" in error.message
    assert await rows(app, CorruptFile) == []
    [run] = await rows(app, TaskRun)
    assert run.counts["missing"] == 1


async def test_age_window_includes_its_edge_and_excludes_older_instances(
    app: Context, files: StoreFiles
) -> None:
    app.now = lambda: NOW
    edge = NOW - timedelta(days=2)
    await files.add("edge.bin", b"e" * 7, created=edge)
    await files.add("recent.bin", b"r" * 5, created=NOW - timedelta(hours=1))
    older = await files.add("older.bin", created=edge - timedelta(microseconds=1))
    flip_byte(older.path)  # would be reported if it were checked

    result = await run_check(app, age_in_days=2)

    assert (result.outcome, result.report.counts) == ("ok", counts(checked=2, ok=2, bytes=12))
    assert await rows(app, CorruptFile) == []


async def test_age_zero_is_an_empty_window_for_files_created_before_the_run(
    app: Context, files: StoreFiles
) -> None:
    """Decision: ``age_in_days = 0`` checks nothing created before the run started.

    The window is ``[start of run - age, ...)``; with age 0 only an instance stamped at or
    after the run's own start (a clock ahead of ours) falls inside. To check a whole store,
    configure a large age instead.
    """
    just_now = await files.add("just-now.bin", created=app.now())
    flip_byte(just_now.path)
    await files.add("stamped-ahead.bin", b"a" * 3, created=app.now() + timedelta(minutes=5))

    result = await run_check(app, age_in_days=0)

    assert (result.outcome, result.report.counts) == ("ok", counts(checked=1, ok=1, bytes=3))
    assert await rows(app, CorruptFile) == []


async def test_other_stores_and_unavailable_instances_are_not_checked(
    app: Context, files: StoreFiles, other_files: StoreFiles
) -> None:
    elsewhere = await other_files.add("elsewhere.bin")
    flip_byte(elsewhere.path)
    offline = await files.add("offline.bin", available=False)
    offline.path.unlink()
    await files.add("online.bin", b"o" * 9)

    result = await run_check(app)

    assert (result.outcome, result.report.counts) == ("ok", counts(checked=1, ok=1, bytes=9))
    assert await rows(app, CorruptFile) == []
    assert await rows(app, ErrorRecord) == []


async def test_every_instance_is_checked_exactly_once_across_pages(
    app: Context, files: StoreFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check_integrity, "PAGE_SIZE", 3)
    page_queries: list[str] = []

    def count_page_queries(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM instances JOIN files" in statement:
            page_queries.append(statement)

    event.listen(app.engine.sync_engine, "before_cursor_execute", count_page_queries)
    items = [await files.add(f"f/{number:02}.bin", bytes([number]) * 4) for number in range(10)]
    damaged = items[1::2]
    for item in damaged:
        flip_byte(item.path)

    result = await run_check(app)

    assert result.report.counts == counts(checked=10, ok=5, corrupt=5, bytes=40)
    corrupt = await rows(app, CorruptFile)
    assert sorted(row.instance_id or 0 for row in corrupt) == [item.instance_id for item in damaged]
    assert all(row.count == 1 for row in corrupt)
    assert len(page_queries) >= 4  # 10 instances in pages of 3


async def test_each_checksum_is_verified_with_its_own_algorithm(
    app: Context, files: StoreFiles
) -> None:
    algorithms = ["md5", "xxh3", "sha256", "legacy"]
    items = [await files.add(f"{alg}.bin", alg.encode() * 40, algorithm=alg) for alg in algorithms]

    first = await run_check(app)

    assert (first.outcome, first.report.counts["ok"]) == ("ok", 4)
    damaged = {item.instance_id: flip_byte(item.path, 5) for item in items}

    second = await run_check(app)

    assert second.report.counts["corrupt"] == 4
    found = {row.instance_id: row.computed_checksum for row in await rows(app, CorruptFile)}
    canonical = ["md5", "xxh3", "sha256", "md5"]  # legacy bare hex is md5
    assert found == {
        item.instance_id: checksum_of(damaged[item.instance_id], alg)
        for item, alg in zip(items, canonical, strict=True)
    }


async def test_appended_bytes_and_a_wrong_size_are_corrupt(app: Context, files: StoreFiles) -> None:
    grown = await files.add("grown.bin", b"g" * 100)
    with grown.path.open("ab") as handle:
        handle.write(b"\0")
    content = b"s" * 64
    files.path_of("resized.bin").write_bytes(content)
    resized = await files.catalogue("resized.bin", checksum_of(content), len(content) + 1)

    result = await run_check(app)

    assert result.report.counts == counts(checked=2, corrupt=2, bytes=101 + 64)
    found = {row.instance_id: row.computed_checksum for row in await rows(app, CorruptFile)}
    assert found == {
        grown.instance_id: checksum_of(b"g" * 100 + b"\0"),
        resized.instance_id: checksum_of(content),
    }


async def test_unverifiable_files_are_reported_and_do_not_stop_the_others(
    app: Context, files: StoreFiles
) -> None:
    fifo = files.path_of("pipe.bin")
    os.mkfifo(fifo)
    await files.catalogue("pipe.bin", checksum_of(b""), 0)
    files.path_of("garbled.bin").write_bytes(b"z")
    await files.catalogue("garbled.bin", "md5:::not-hex", 1)
    await files.add("fine.bin", b"f" * 11)

    async with asyncio.timeout(30):  # a FIFO opened for reading would block forever
        result = await run_check(app)

    assert result.outcome == "problems"
    assert result.report.counts == counts(checked=3, ok=1, unverifiable=2, bytes=11)
    messages = sorted(row.message for row in await error_rows(app, "unverifiable_file"))
    assert len(messages) == 2
    assert "garbled.bin" in messages[0] and "pipe.bin" in messages[1]
    assert await rows(app, CorruptFile) == []


async def test_one_worker_reading_ahead_finds_every_problem_of_big_files(
    app: Context, files: StoreFiles
) -> None:
    """With one worker (a core to spare) big files are read ahead by a second thread."""
    size = 300 * 1024
    await files.add("big/ok.bin", os.urandom(size))
    await files.add("big/other-algorithm.bin", os.urandom(size), algorithm="sha256")
    bad = await files.add("big/bad.bin", os.urandom(size))
    damaged = flip_byte(bad.path, size - 1)
    (await files.add("big/gone.bin", os.urandom(size))).path.unlink()

    result = await run_check(app, concurrency=1)

    assert result.report.counts == counts(checked=4, ok=2, corrupt=1, missing=1, bytes=3 * size)
    [row] = await rows(app, CorruptFile)
    assert (row.instance_id, row.computed_checksum) == (bad.instance_id, checksum_of(damaged))
    [missing] = await error_rows(app, "missing_file")
    assert "big/gone.bin" in missing.message


async def test_missing_store_area_fails_the_run_instead_of_reporting_every_file(
    app: Context, files: StoreFiles
) -> None:
    await files.add("a.bin")
    await files.add("b.bin")
    shutil.rmtree(files.area)

    result = await run_check(app)

    assert result.outcome == "error"
    assert "store area" in (result.error or "")
    assert await error_rows(app, "missing_file") == []
    [task_error] = await error_rows(app, "task")
    assert "StoreUnavailableError" in task_error.message


async def test_spent_budget_takes_no_items(app: Context, files: StoreFiles) -> None:
    bad = await files.add("bad.bin")
    flip_byte(bad.path)
    (await files.add("gone.bin")).path.unlink()

    result = await run_check(app, soft_timeout=timedelta(microseconds=1))

    assert result.outcome in {"ok", "timed_out"}
    assert result.report.counts.get("checked", 0) == 0
    assert result.report.problems == []
    assert await rows(app, CorruptFile) == []
    assert await rows(app, ErrorRecord) == []
    [run] = await rows(app, TaskRun)
    assert run.outcome == result.outcome


def sparse(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        handle.truncate(size)


async def test_run_cut_short_keeps_what_it_found(app: Context, files: StoreFiles) -> None:
    bad = await files.add("a-bad.bin", b"b" * 10)
    damaged = flip_byte(bad.path)
    sparse(files.path_of("huge.bin"), 8 * 1024**3)  # md5 needs many seconds for it
    await files.catalogue("huge.bin", "md5:::" + "0" * 32, 8 * 1024**3)
    started = asyncio.get_running_loop().time()

    result = await run_check(app, timeout_grace=0.3, soft_timeout=timedelta(seconds=0.2))

    assert asyncio.get_running_loop().time() - started < 5
    assert result.outcome == "timed_out"
    [row] = await rows(app, CorruptFile)
    assert (row.instance_id, row.computed_checksum) == (bad.instance_id, checksum_of(damaged))
    [run] = await rows(app, TaskRun)
    assert (run.outcome, run.counts["checked"], run.counts["corrupt"]) == ("timed_out", 1, 1)


@pytest.fixture(scope="module")
def big_zeros_md5() -> str:
    """md5 of BIG_SIZE zero bytes, computed once (the file itself is sparse per test)."""
    hasher, chunk = hashlib.md5(), bytes(1024**2)
    for _ in range(BIG_SIZE // len(chunk)):
        hasher.update(chunk)
    return f"md5:::{hasher.hexdigest()}"


async def test_hashing_a_large_file_does_not_block_the_event_loop(
    app: Context, files: StoreFiles, big_zeros_md5: str
) -> None:
    sparse(files.path_of("big.bin"), BIG_SIZE)
    await files.catalogue("big.bin", big_zeros_md5, BIG_SIZE)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def tick(clock: Callable[[], float] = loop.time) -> None:
        last = clock()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(clock() - last)
            last = clock()

    ticker = asyncio.create_task(tick())
    started = loop.time()
    result = await run_check(app)
    elapsed = loop.time() - started
    ticker.cancel()

    assert (result.outcome, result.report.counts["bytes"]) == ("ok", BIG_SIZE)
    assert max(gaps) < 0.5
    assert max(gaps) < elapsed / 3  # a blocked loop would show one gap as long as the hash
