"""The runner embedded in a real web server, and used directly as an ``async with`` block.

The web-server tests serve a real FastAPI app with a real uvicorn server on a free loopback
port and talk to it over HTTP; the background task is the real ``check_integrity`` on a real
store whose file is hashed from disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from sqlalchemy import select

from librarian_async.config import Settings, TaskConfig, parse_task_config
from librarian_async.context import Context
from librarian_async.db import catalog
from librarian_async.db.models import File, Store, TaskRun
from librarian_async.enums import DeletionPolicy
from librarian_async.errors import ConfigError
from librarian_async.runner import background_runner, build_scheduler, lifespan
from librarian_async.scheduler import Scheduler
from librarian_async.tasks import REGISTRY
from librarian_async.tasks.base import TaskFunction
from librarian_async.wakeups import Wakeups

T = TypeVar("T")
Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "embed_fastapi.py"
ENTRY = "integrity"
BIG_FILE_SIZE = 2 * 1024**3  # sparse; hashing it takes seconds, far longer than the grace


# --- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CataloguedFile:
    store_name: str
    path: Path


def write_file(path: Path, content: bytes | None = None, sparse_size: int = 0) -> str:
    """Create ``path`` (with ``content``, or sparse of ``sparse_size``); its md5 checksum."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        with path.open("wb") as handle:
            handle.truncate(sparse_size)
        return "md5:::" + "0" * 32  # never compared: these runs are meant to be cut short
    path.write_bytes(content)
    return "md5:::" + hashlib.md5(content).hexdigest()


def make_store_dirs(root: Path) -> tuple[Path, Path]:
    staging, store = root / "staging", root / "store"
    staging.mkdir(parents=True)
    store.mkdir(parents=True)
    return staging, store


async def catalogue_file(
    app: Context,
    root: Path,
    *,
    store_name: str = "main-store",
    content: bytes | None = b"visibilities\n" * 1000,
    sparse_size: int = 0,
) -> CataloguedFile:
    """A store row with real directories, and one file with its instance on that store."""
    staging, store_dir = make_store_dirs(root / store_name)
    path = store_dir / "raw" / "obs-1.uvh5"
    checksum = write_file(path, content, sparse_size)
    async with app.sessions.begin() as session:
        store = await catalog.add_store(
            session, Store(name=store_name, staging_path=str(staging), store_path=str(store_dir))
        )
        now = app.now()
        file = File(
            name="raw/obs-1.uvh5",
            create_time=now,
            size=path.stat().st_size,
            checksum=checksum,
            uploader="test",
            source="test",
        )
        await catalog.add_file_with_instance(
            session,
            file,
            store=store,
            path=str(path),
            deletion_policy=DeletionPolicy.DISALLOWED,
            created_time=now,
        )
    return CataloguedFile(store_name, path)


def integrity_config(store_name: str, **extra: object) -> TaskConfig:
    entry = {"task_name": ENTRY, "every": "1h", "store_name": store_name, "age_in_days": 1}
    text = json.dumps({"check_integrity": [{**entry, "concurrency": 1, **extra}]})
    return parse_task_config(text, "test-tasks.json")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, within: float = 30.0
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def runs_of(app: Context, task_name: str = ENTRY) -> list[TaskRun]:
    async with app.sessions() as session:
        query = select(TaskRun).where(TaskRun.task_name == task_name).order_by(TaskRun.id)
        return list((await session.scalars(query)).all())


async def finished_ok_run(app: Context) -> TaskRun | None:
    return next((run for run in await runs_of(app) if run.outcome == "ok"), None)


async def running_run(app: Context) -> TaskRun | None:
    return next((run for run in await runs_of(app) if run.outcome == "running"), None)


def other_tasks() -> set[asyncio.Task[Any]]:
    """Unfinished asyncio tasks besides the test itself."""
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}


def background_task() -> asyncio.Task[Any]:
    """The task running ``Scheduler.run_forever`` (named by the runner)."""
    [task] = [task for task in asyncio.all_tasks() if task.get_name() == "librarian-background"]
    return task


def results_route(app: FastAPI) -> None:
    @app.get("/runs")
    async def runs(request: Request) -> list[dict[str, Any]]:
        scheduler: Scheduler = request.app.state.scheduler
        return [
            {"task_name": result.task_name, "outcome": result.outcome, **result.report.counts}
            for result in scheduler.last_results.values()
        ]


def observed(inner: Lifespan, log: list[str]) -> Lifespan:
    """``inner`` unchanged, noting whether the background task ended by the time it exits."""

    @asynccontextmanager
    async def observing(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):
            runner = background_task()
            log.append("started")
            yield
        log.append("exited, background " + ("stopped" if runner.done() else "still running"))

    return observing


async def serve_until_exit(server: uvicorn.Server, sock: socket.socket) -> int | None:
    """Serve; uvicorn ends a failed start-up with ``sys.exit``, returned here as its code."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else -1
    return None


@dataclass
class Served:
    server: uvicorn.Server
    serving: asyncio.Task[int | None]
    base_url: str


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[Served]:
    """``app`` served by uvicorn on a free loopback port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: keep the test's logging (and caplog) instead of uvicorn's dictConfig.
    config = uvicorn.Config(app, lifespan="on", log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(serve_until_exit(server, sock), name="uvicorn")
    try:

        async def started_or_ended() -> bool:
            return server.started or serving.done()

        await eventually(started_or_ended, "the server to start")
        yield Served(server, serving, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(asyncio.shield(serving), timeout=30)
        sock.close()


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("embed_fastapi_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- inside a real uvicorn server ----------------------------------------------------------


async def test_lifespan_runs_task_beside_real_server_and_stops_cleanly(
    app: Context, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await catalogue_file(app, tmp_path)
    lifespan_log: list[str] = []
    web = FastAPI(
        lifespan=observed(lifespan(settings, integrity_config("main-store")), lifespan_log)
    )
    results_route(web)

    async with served(web) as live, httpx.AsyncClient(base_url=live.base_url) as client:
        assert live.server.started
        runner = background_task()

        async def reported_ok() -> list[dict[str, Any]]:
            response = await client.get("/runs")
            response.raise_for_status()
            body: list[dict[str, Any]] = response.json()
            ok = [r for r in body if r["task_name"] == ENTRY and r["outcome"] == "ok"]
            return ok if ok and await finished_ok_run(app) else []

        [reported] = await eventually(reported_ok, "an ok run reported over HTTP")
        assert reported["checked"] == reported["ok"] == 1
        assert not runner.done()

    assert await live.serving is None  # serve() returned: no sys.exit, no exception
    assert lifespan_log == ["started", "exited, background stopped"]
    assert not live.server.lifespan.error_occurred
    assert not live.server.lifespan.shutdown_failed
    assert runner.done() and not runner.cancelled() and runner.exception() is None
    [run] = await runs_of(app)
    assert run.outcome == "ok" and run.finished_at is not None
    assert {key: n for key, n in run.counts.items() if n} == {"checked": 1, "bytes": 13000, "ok": 1}
    assert other_tasks() == set()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_unknown_store_stops_start_up_before_serving(
    app: Context, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await catalogue_file(app, tmp_path, store_name="main-store")
    web = FastAPI(lifespan=lifespan(settings, integrity_config("no-such-store")))
    served_requests: list[str] = []

    @web.get("/ping")
    async def ping() -> str:
        served_requests.append("ping")
        return "pong"

    async with served(web) as live:
        exit_code = await asyncio.wait_for(asyncio.shield(live.serving), timeout=30)
        assert exit_code == 3  # uvicorn's start-up failure exit code
        assert not live.server.started
        async with httpx.AsyncClient(base_url=live.base_url) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("/ping")

    assert served_requests == []
    failure = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "ConfigError" in failure
    assert 'store_name: unknown store "no-such-store"' in failure
    assert await runs_of(app) == []
    assert other_tasks() == set()


async def test_lifespan_raises_config_error_naming_the_store(
    app: Context, settings: Settings, tmp_path: Path
) -> None:
    await catalogue_file(app, tmp_path, store_name="main-store")
    run_beside = lifespan(settings, integrity_config("no-such-store"))
    with pytest.raises(ConfigError) as raised:
        async with run_beside(FastAPI()):
            pytest.fail("the lifespan must not start")
    [problem] = raised.value.problems
    assert 'unknown store "no-such-store"' in problem
    assert 'did you mean "main-store"' in problem


# --- background_runner without a web server ------------------------------------------------


async def test_runner_block_runs_the_entry(
    app: Context, settings: Settings, tmp_path: Path
) -> None:
    await catalogue_file(app, tmp_path)
    async with background_runner(settings, integrity_config("main-store")) as scheduler:
        run = await eventually(lambda: finished_ok_run(app), "an ok run")
        runner = background_task()
    assert runner.done()
    assert run.finished_at is not None
    assert [result.outcome for result in scheduler.last_results.values()] == ["ok"]
    assert other_tasks() == set()


async def test_a_wake_up_through_the_given_wakeups_runs_the_hourly_entry_again(
    app: Context, settings: Settings, tmp_path: Path
) -> None:
    """serve passes its API context's wakeups, so that a request can wake a task."""
    await catalogue_file(app, tmp_path)
    wakeups = Wakeups()
    async with background_runner(settings, integrity_config("main-store"), wakeups) as scheduler:
        assert scheduler.app.wakeups is wakeups
        await eventually(lambda: finished_ok_run(app), "the first run")
        wakeups.wake("check_integrity")
        ok_runs = [run for run in await runs_of(app) if run.outcome == "ok"]

        async def second_run() -> bool:
            return len([run for run in await runs_of(app) if run.outcome == "ok"]) >= 2

        await eventually(second_run, "a second run, an hour early")
    assert len(ok_runs) == 1


async def test_exit_cancels_run_in_progress_within_shutdown_grace(
    app: Context, settings: Settings, tmp_path: Path
) -> None:
    grace = 0.2
    await catalogue_file(app, tmp_path, content=None, sparse_size=BIG_FILE_SIZE)
    quick = settings.model_copy(update={"shutdown_grace": grace})
    config = integrity_config("main-store", soft_timeout="1h")
    loop = asyncio.get_running_loop()

    async with background_runner(quick, config) as scheduler:
        await eventually(lambda: running_run(app), "the run to start")
        await asyncio.sleep(0.3)  # let it get into hashing the big file
        leaving = loop.time()
    exit_took = loop.time() - leaving

    assert exit_took < grace + 3.0
    [run] = await runs_of(app)
    assert run.outcome == "cancelled"  # hashing 2 GiB cannot finish within 0.2 s
    assert run.finished_at is not None
    assert [result.outcome for result in scheduler.last_results.values()] == ["cancelled"]
    assert other_tasks() == set()


async def test_cancelling_the_host_during_the_grace_is_not_swallowed(
    app: Context, settings: Settings, tmp_path: Path
) -> None:
    """A host that gives up waiting (cancels its lifespan) must see that cancellation."""
    await catalogue_file(app, tmp_path, content=None, sparse_size=BIG_FILE_SIZE)
    patient = settings.model_copy(update={"shutdown_grace": 60.0})
    config = integrity_config("main-store", soft_timeout="1h")
    leave = asyncio.Event()
    after_block: list[str] = []

    async def host() -> None:
        async with background_runner(patient, config):
            await leave.wait()
        after_block.append("went on as if not cancelled")

    hosting = asyncio.create_task(host())
    await eventually(lambda: running_run(app), "the run to start")
    leave.set()
    await asyncio.sleep(0.3)  # the host now waits in the runner's exit, within the grace
    assert not hosting.done()
    hosting.cancel()
    done, _ = await asyncio.wait({hosting}, timeout=10)

    assert hosting in done
    assert hosting.cancelled()
    assert after_block == []
    [run] = await runs_of(app)
    assert run.outcome == "cancelled" and run.finished_at is not None
    assert other_tasks() == set()


# --- the embedding example -----------------------------------------------------------------


@pytest.mark.parametrize(
    "factory", ["create_app_with_ready_lifespan", "create_app_with_own_lifespan"]
)
async def test_example_app_reports_last_results_on_health(
    app: Context,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    factory: str,
) -> None:
    await catalogue_file(app, tmp_path)
    tasks_file = tmp_path / "tasks.json"
    tasks_file.write_text(
        json.dumps(
            {
                "check_integrity": [
                    {
                        "task_name": ENTRY,
                        "every": "1h",
                        "store_name": "main-store",
                        "age_in_days": 1,
                    }
                ]
            }
        )
    )
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("LIBRARIAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIBRARIAN_BACKGROUND_CONFIG", str(tasks_file))
    example = load_example()
    assert other_tasks() == set()  # importing it started nothing

    async with (
        served(getattr(example, factory)()) as live,
        httpx.AsyncClient(base_url=live.base_url) as client,
    ):

        async def healthy_and_checked() -> dict[str, Any] | None:
            body: dict[str, Any] = (await client.get("/health")).raise_for_status().json()
            return body if body["tasks"].get(ENTRY, {}).get("outcome") == "ok" else None

        body = await eventually(healthy_and_checked, "/health to report the ok run")
    assert await live.serving is None
    assert body["status"] == "ok"
    assert body["tasks"][ENTRY]["counts"]["ok"] == 1
    assert other_tasks() == set()


class LookupRecorder(Mapping[str, TaskFunction]):
    """The real registry, noting which task types are looked up."""

    def __init__(self) -> None:
        self.looked_up: list[str] = []

    def __getitem__(self, task_type: str) -> TaskFunction:
        self.looked_up.append(task_type)
        return REGISTRY[task_type]

    def __contains__(self, task_type: object) -> bool:  # as the real one: imports nothing
        return task_type in REGISTRY

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


async def test_the_scheduler_loads_its_task_modules_before_any_run(
    app: Context, tmp_path: Path
) -> None:
    """A module imported inside a task's first run stalled the loop for 33-35 ms."""
    await catalogue_file(app, tmp_path)
    registry = LookupRecorder()
    scheduler = await build_scheduler(app, integrity_config("main-store"), registry)
    assert registry.looked_up == ["check_integrity"]
    assert await runs_of(app) == [] and scheduler.last_results == {}
