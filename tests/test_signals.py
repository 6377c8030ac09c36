"""``run`` as a real process: SIGTERM and SIGINT drain the runs and exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from librarian_async.context import Context
from librarian_async.db import catalog
from librarian_async.db.models import Store, TaskRun


async def wait_for_run(app: Context, task_name: str, deadline: float = 60.0) -> TaskRun:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    while loop.time() < give_up:
        async with app.sessions() as session:
            run = await session.scalar(select(TaskRun).where(TaskRun.task_name == task_name))
        if run is not None and run.finished_at is not None:
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"no finished run of {task_name} within {deadline}s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_run_stops_cleanly_on_signal(
    app: Context, database_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    for area in ("staging", "store"):
        (tmp_path / area).mkdir()
    async with app.sessions.begin() as session:
        await catalog.add_store(
            session,
            Store(
                name="main",
                staging_path=str(tmp_path / "staging"),
                store_path=str(tmp_path / "store"),
            ),
        )
    config = tmp_path / "tasks.json"
    config.write_text(
        json.dumps(
            {
                "check_integrity": [
                    {
                        "task_name": "checker",
                        "every": "00:00:01",
                        "store_name": "main",
                        "age_in_days": 1,
                    }
                ]
            }
        )
    )
    env = os.environ | {
        "LIBRARIAN_DATABASE_URL": database_url,
        "LIBRARIAN_HOME": str(tmp_path / "home"),
        "LIBRARIAN_BACKGROUND_CONFIG": str(config),
        "LIBRARIAN_SHUTDOWN_GRACE": "5",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "librarian_async",
        "run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        first = await wait_for_run(app, "checker")
        process.send_signal(signum)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    assert first.outcome == "ok"
    async with app.sessions() as session:
        rows = (await session.scalars(select(TaskRun))).all()
    assert rows and all(row.finished_at is not None for row in rows)
