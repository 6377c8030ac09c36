"""``python -m librarian_async serve`` as a real process: API, metrics, background tasks, and a
clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import httpx

from librarian_async.context import Context

from .helpers import add_store, add_users, auth


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment(app: Context, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "LIBRARIAN_DATABASE_URL": app.settings.resolved_database_url,
        "LIBRARIAN_HOME": str(tmp_path / "home"),
        "LIBRARIAN_NAME": "served-librarian",
        "LIBRARIAN_SHUTDOWN_GRACE": "5",
        **extra,
    }


async def start(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "librarian_async", "serve", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait_for_metric(client: httpx.AsyncClient, line: str, within: float = 30) -> str:
    deadline = asyncio.get_running_loop().time() + within
    text = ""
    while asyncio.get_running_loop().time() < deadline:
        try:
            text = (await client.get("/metrics")).text
        except httpx.TransportError:
            text = ""
        if line in text.splitlines():
            return text
        await asyncio.sleep(0.2)
    raise AssertionError(f"{line!r} never appeared in /metrics:\n{text}")


async def test_serve_runs_api_and_tasks_then_stops_on_sigterm(app: Context, tmp_path: Path) -> None:
    await add_users(app)
    await add_store(app, tmp_path / "stores", "main")
    config = tmp_path / "tasks.json"
    entry = {"task_name": "integrity", "every": "1h", "store_name": "main", "age_in_days": 1}
    config.write_text(json.dumps({"check_integrity": [entry]}))
    port = free_port()
    env = environment(app, tmp_path, LIBRARIAN_BACKGROUND_CONFIG=str(config))
    process = await start(env, "--host", "127.0.0.1", "--port", str(port))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            ran = 'outcome="ok"} 1'
            text = await wait_for_metric(
                client,
                f'librarian_task_runs_total{{task_type="check_integrity",'
                f'task_name="integrity",{ran}',
            )
            assert "librarian_corrupt_files 0" in text
            pong = await client.post("/api/v2/ping/logged", json={}, auth=auth("reader"))
            assert pong.json()["name"] == "served-librarian"
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr


async def test_a_bad_task_configuration_is_one_line_before_serving(
    app: Context, tmp_path: Path
) -> None:
    config = tmp_path / "tasks.json"
    entry = {"task_name": "integrity", "every": "1h", "store_name": "nowhere", "age_in_days": 1}
    config.write_text(json.dumps({"check_integrity": [entry]}))
    env = environment(app, tmp_path, LIBRARIAN_BACKGROUND_CONFIG=str(config))
    process = await start(env, "--port", str(free_port()))
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    errors = [line for line in stderr.decode().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nowhere" in errors[0]
    assert "Traceback" not in stderr.decode()
