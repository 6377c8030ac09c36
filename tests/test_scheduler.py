"""The scheduler: soft timeouts, isolation of failures, no overlap, drain on stop."""

from __future__ import annotations

import asyncio
import itertools
import math
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import select

from librarian_async.config import TaskEntry
from librarian_async.context import Context
from librarian_async.db.models import ErrorRecord, TaskRun
from librarian_async.scheduler import Scheduler
from librarian_async.storage.store import LocalStore
from librarian_async.tasks.base import Report, TaskContext, TaskFunction
from librarian_async.wakeups import Wakeups


class Entry(TaskEntry):
    task_type: ClassVar[str] = "test"


class OtherEntry(TaskEntry):
    task_type: ClassVar[str] = "other"


def entry(name: str, every: float, soft_timeout: float | None = None, kind: type = Entry) -> Entry:
    return kind(  # type: ignore[no-any-return]
        task_name=name,
        every=timedelta(seconds=every),
        soft_timeout=None if soft_timeout is None else timedelta(seconds=soft_timeout),
    )


async def task_rows(app: Context) -> list[TaskRun]:
    async with app.sessions() as session:
        return list((await session.scalars(select(TaskRun).order_by(TaskRun.id))).all())


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    runner = asyncio.create_task(scheduler.run_forever())
    await asyncio.sleep(seconds)
    scheduler.stop()
    await asyncio.wait_for(runner, timeout=10)


async def test_overrunning_task_is_cancelled_in_grace_and_leaves_no_partial_file(
    app: Context, tmp_path: Path
) -> None:
    store = LocalStore("s", tmp_path / "staging", tmp_path / "store")
    store.staging_path.mkdir()
    store.store_path.mkdir()
    source = tmp_path / "big.bin"
    with source.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    copies: list[Path] = []

    async def copy_forever(task: TaskContext, params: Entry) -> Report:
        for number in range(10_000):  # ignores its budget on purpose
            path, _ = await store.copy_in(source, f"copy-{number}.bin")
            copies.append(path)
        return task.report

    scheduler = Scheduler(
        app, [entry("copier", 60, soft_timeout=0.2)], {"test": copy_forever}, timeout_grace=0.3
    )
    started = asyncio.get_running_loop().time()
    [result] = await scheduler.run_once()
    elapsed = asyncio.get_running_loop().time() - started

    assert result.outcome == "timed_out"
    assert elapsed < 0.2 + 0.3 + 2.0  # cancelled within the grace (plus one chunk and slack)
    assert store.leftover_temporaries() == []
    written = sorted(store.store_path.iterdir())
    # Every copy the task saw finish is there. One more may be: a cancellation that lands
    # while the final rename runs lets the rename finish (the file is complete; a retry
    # adopts it) and only then reaches the task.
    assert set(copies) <= set(written)
    assert len(written) - len(copies) <= 1
    assert all(path.stat().st_size == source.stat().st_size for path in written)
    [row] = await task_rows(app)
    assert row.outcome == "timed_out"
    assert row.finished_at is not None


async def test_task_that_respects_its_budget_stops_taking_items(app: Context) -> None:
    async def one_item_at_a_time(task: TaskContext, params: Entry) -> Report:
        while not task.budget.spent():
            await asyncio.sleep(0.01)
            task.report.add("items")
        return task.report

    scheduler = Scheduler(
        app, [entry("polite", 60, soft_timeout=0.1)], {"test": one_item_at_a_time}, timeout_grace=5
    )
    [result] = await scheduler.run_once()
    assert result.outcome == "ok"
    assert result.report.counts["items"] >= 1


async def test_null_soft_timeout_means_unlimited(app: Context) -> None:
    async def check_budget(task: TaskContext, params: Entry) -> Report:
        task.report.add(
            "unlimited", int(task.budget.remaining() is None and not task.budget.spent())
        )
        return task.report

    [result] = await Scheduler(app, [entry("free", 60)], {"test": check_budget}).run_once()
    assert result.report.counts == {"unlimited": 1}


async def test_crashing_task_does_not_stop_another_task(app: Context) -> None:
    healthy_runs = 0

    async def crash(task: TaskContext, params: Entry) -> Report:
        raise RuntimeError("disk on fire")

    async def healthy(task: TaskContext, params: OtherEntry) -> Report:
        nonlocal healthy_runs
        healthy_runs += 1
        return task.report

    registry: dict[str, TaskFunction] = {"test": crash, "other": healthy}
    entries = [entry("crasher", 0.05), entry("healthy", 0.05, kind=OtherEntry)]
    await run_for(Scheduler(app, entries, registry), 0.6)

    rows = await task_rows(app)
    crashed = [row for row in rows if row.task_name == "crasher"]
    assert healthy_runs >= 3
    assert len(crashed) >= 3  # the crashing entry itself keeps being scheduled too
    assert all(row.outcome == "error" and "disk on fire" in (row.error or "") for row in crashed)
    assert all(row.outcome == "ok" for row in rows if row.task_name == "healthy")
    async with app.sessions() as session:
        errors = (await session.scalars(select(ErrorRecord))).all()
    assert errors and all("disk on fire" in error.message for error in errors)


async def test_runs_of_one_entry_never_overlap_and_do_not_burst(app: Context) -> None:
    running = 0
    most_at_once = 0
    starts: list[float] = []

    async def slow(task: TaskContext, params: Entry) -> Report:
        nonlocal running, most_at_once
        starts.append(asyncio.get_running_loop().time())
        running += 1
        most_at_once = max(most_at_once, running)
        await asyncio.sleep(0.15 if len(starts) == 1 else 0.01)  # the first run overruns
        running -= 1
        return task.report

    await run_for(Scheduler(app, [entry("slow", 0.05)], {"test": slow}), 0.6)

    assert most_at_once == 1
    assert len(starts) >= 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] >= 0.15  # the next run waited for the overrunning one
    # and no burst of missed ticks followed: the later runs never outnumber the ticks they
    # span. (A burst runs missed ticks back to back, ~10 ms apart, so even one caught-up
    # tick adds a run. Counting instead of asking for a tick of its own per run: a start
    # delayed by a slow commit into the next tick, seen on a loaded VM at 40+ ms, is late,
    # not an extra run.)
    ticks = [math.floor((start - starts[0] + 0.01) / 0.05) for start in starts[1:]]
    assert len(ticks) <= ticks[-1] - ticks[0] + 1, ticks


async def test_a_woken_entry_runs_at_once_and_never_overlaps(app: Context) -> None:
    """An hourly entry runs again as soon as another task wakes it; a wake-up during its run
    gives one more run right after it, never a run beside it."""
    starts: list[float] = []
    running = most_at_once = 0
    wakes = 0

    async def hourly(task: TaskContext, params: Entry) -> Report:
        nonlocal running, most_at_once
        starts.append(asyncio.get_running_loop().time())
        running += 1
        most_at_once = max(most_at_once, running)
        await asyncio.sleep(0.1)
        running -= 1
        return task.report

    async def waker(task: TaskContext, params: OtherEntry) -> Report:
        nonlocal wakes
        await asyncio.sleep(0.02)  # during the hourly entry's first run
        for _ in range(3):  # several wake-ups before it could run again: one more run
            task.app.wakeups.wake("test")
            wakes += 1
        return task.report

    entries = [entry("hourly", 3600), entry("waker", 3600, kind=OtherEntry)]
    scheduler = Scheduler(app, entries, {"test": hourly, "other": waker})
    await run_for(scheduler, 0.5)

    assert wakes == 3
    assert len(starts) == 2, starts
    assert most_at_once == 1


def test_waking_a_task_type_nobody_listens_to_does_nothing() -> None:
    wakeups = Wakeups()
    wakeups.wake("consume_queue")
    with wakeups.listening("consume_queue") as woken:
        assert not woken.is_set()
        wakeups.wake("receive_clone")
        assert not woken.is_set()
        wakeups.wake("consume_queue")
        assert woken.is_set()
    wakeups.wake("consume_queue")  # the listener left: nothing to set, no error


async def test_stop_lets_a_short_run_finish(app: Context) -> None:
    finished = asyncio.Event()

    async def short(task: TaskContext, params: Entry) -> Report:
        await asyncio.sleep(0.2)
        finished.set()
        return task.report

    await run_for(Scheduler(app, [entry("short", 60)], {"test": short}, shutdown_grace=5), 0.05)
    assert finished.is_set()
    [row] = await task_rows(app)
    assert row.outcome == "ok"


async def test_stop_cancels_a_run_that_outlives_the_grace(app: Context) -> None:
    started = asyncio.Event()

    async def endless(task: TaskContext, params: Entry) -> Report:
        started.set()
        await asyncio.sleep(3600)
        return task.report

    scheduler = Scheduler(app, [entry("endless", 60)], {"test": endless}, shutdown_grace=0.1)
    runner = asyncio.create_task(scheduler.run_forever())
    await asyncio.wait_for(started.wait(), timeout=10)  # stop only once the run is under way
    scheduler.stop()
    await asyncio.wait_for(runner, timeout=10)
    [row] = await task_rows(app)
    assert row.outcome == "cancelled"
    assert row.finished_at is not None


@pytest.mark.parametrize(
    ("behaviour", "outcome"), [("fine", "ok"), ("problem", "problems"), ("raise", "error")]
)
async def test_run_once_outcomes(app: Context, behaviour: str, outcome: str) -> None:
    async def task_function(task: TaskContext, params: Entry) -> Report:
        if behaviour == "raise":
            raise ValueError("boom")
        if behaviour == "problem":
            task.report.problem("corrupt: a.bin")
        return task.report

    [result] = await Scheduler(app, [entry("t", 60)], {"test": task_function}).run_once()
    assert result.outcome == outcome
    [row] = await task_rows(app)
    assert row.outcome == outcome
