"""A warm process that runs task entries on demand, for bench_network.py.

    LIBRARIAN_...=... python benchmarks/stage_worker.py CONFIG

Each line read on standard input names one task entry of CONFIG; the entry is run once,
exactly as ``run --once --stats --only NAME`` runs it (same scheduler, same database
settings), and the same lines are printed, then ``END``. Between stages the process,
its imports and its database engine stay up, as in a long-running ``serve``: the pipeline
of stages is then timed without four interpreter start-ups, and with no idle gap in which
the disk could flush what an earlier stage wrote.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from librarian_async.cli.common import database
from librarian_async.cli.running import exit_code, freeze_startup_objects, print_stats
from librarian_async.config import load_settings, load_task_config
from librarian_async.looplag import measure_loop_lag
from librarian_async.runner import build_scheduler


async def serve_stages(config_path: Path) -> None:
    settings = load_settings()
    config = load_task_config(config_path)
    loop = asyncio.get_running_loop()
    async with database(settings) as app:
        freeze_startup_objects()
        print("READY", flush=True)
        while name := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            scheduler = await build_scheduler(app, config, only={name})
            async with measure_loop_lag() as lag:
                results = await scheduler.run_once()
            print_stats(lag)
            print(f"exit={exit_code(results)}")
            print("END", flush=True)


if __name__ == "__main__":
    asyncio.run(serve_stages(Path(sys.argv[1])))
