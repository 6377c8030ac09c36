"""A warm process that runs task entries on demand, for bench_network.py.

    LIBRARIAN_...=... python benchmarks/stage_worker.py CONFIG

Commands, one per line on standard input:

* ``NAME``: the entry NAME of CONFIG runs once, exactly as ``run --once --stats --only NAME``
  runs it (same scheduler, same database settings); the same lines are printed, then ``END``.
* ``CONCURRENT NAME|NAME|...``: the named entries run on their schedules (their ``every``),
  concurrently, exactly as ``serve`` or ``run`` runs them, until the line ``STOP``; then one
  line per run that did something (``NAME: OUTCOME in Ns (summary)``), the stats line,
  ``exit=N`` and ``END``.

The scheduler is built once before ``READY`` (importing every entry's task module, as
``serve`` does at start-up). Between commands the process, its imports and its database
engine stay up, as in a long-running ``serve``: stages are timed without an interpreter
start-up each, and with no idle gap in which the disk could flush what an earlier stage
wrote.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from librarian_async.cli.common import database
from librarian_async.cli.running import exit_code, print_stats
from librarian_async.config import TaskConfig, load_settings, load_task_config
from librarian_async.context import Context
from librarian_async.heap import keep_buffer_pages
from librarian_async.looplag import measure_loop_lag
from librarian_async.runner import build_scheduler, freeze_startup_objects
from librarian_async.scheduler import RunResult, Scheduler


class RecordingScheduler(Scheduler):
    """The product's scheduler, keeping every run's result instead of only the last."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[RunResult] = []

    async def run_entry(self, entry: Any) -> RunResult:
        result = await super().run_entry(entry)
        self.results.append(result)
        return result


async def read_line() -> str:
    line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


async def run_once(app: Context, config: TaskConfig, name: str) -> None:
    scheduler = await build_scheduler(app, config, only={name})
    async with measure_loop_lag() as lag:
        results = await scheduler.run_once()
    print_stats(lag)
    print(f"exit={exit_code(results)}")


async def run_concurrently(app: Context, config: TaskConfig, names: set[str]) -> None:
    chosen = await build_scheduler(app, config, only=names)
    scheduler = RecordingScheduler(app, chosen.entries, chosen.registry)
    async with measure_loop_lag() as lag:
        runs = asyncio.create_task(scheduler.run_forever())
        while await read_line() != "STOP":
            pass
        scheduler.stop()
        await runs
    busy = [result for result in scheduler.results if result.report.counts or not result.clean]
    print_stats(lag)
    print(f"exit={exit_code(busy)}")


async def serve_stages(config_path: Path) -> None:
    settings = load_settings()
    config = load_task_config(config_path)
    async with database(settings) as app:
        await build_scheduler(app, config)  # imports every entry's task module, as serve does
        freeze_startup_objects()
        print("READY", flush=True)
        while command := await read_line():
            if command.startswith("CONCURRENT "):
                names = set(command.removeprefix("CONCURRENT ").split("|"))
                await run_concurrently(app, config, names)
            else:
                await run_once(app, config, command)
            print("END", flush=True)


if __name__ == "__main__":
    keep_buffer_pages()  # as the CLI does for every command
    asyncio.run(serve_stages(Path(sys.argv[1])))
