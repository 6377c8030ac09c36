"""Run the librarian's background tasks inside your own FastAPI (or Starlette) app.

The tasks start when the web server starts and stop cleanly when it shuts down: no new runs
start, runs in progress get ``LIBRARIAN_SHUTDOWN_GRACE`` seconds to finish, the rest are
cancelled and every run is recorded in ``task_runs``. There are two ways to wire this up:

1. :func:`create_app_with_ready_lifespan` uses the ready ``lifespan()`` of
   :mod:`librarian_async.runner`; the scheduler is put on ``app.state.scheduler``.
2. :func:`create_app_with_own_lifespan` opens ``background_runner()`` inside a lifespan
   of your own, next to your own start-up and shutdown work.

Both apps serve ``GET /health`` with the last result of every task entry.

Settings come from the ``LIBRARIAN_*`` environment variables when the server starts (not
when this module is imported). At least set the database and the task configuration, e.g.::

    export LIBRARIAN_DATABASE_URL=sqlite:///var/librarian.sqlite3
    export LIBRARIAN_BACKGROUND_CONFIG=tasks.json   # every store it names must exist
    python examples/embed_fastapi.py --own-lifespan --port 8000
    curl http://127.0.0.1:8000/health

Start-up fails with a ``ConfigError`` (and the server does not start serving) when the task
configuration names a store or librarian that the database does not know.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request

from librarian_async.config import load_settings
from librarian_async.runner import background_runner, lifespan
from librarian_async.scheduler import Scheduler

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """``{"status": "ok", "tasks": {task name: its last result}}``."""
    scheduler: Scheduler = request.app.state.scheduler
    last: dict[str, Any] = {}
    for result in scheduler.last_results.values():
        last[result.task_name] = {
            "outcome": result.outcome,
            "seconds": round(result.duration, 3),
            "counts": result.report.counts,
            "problems": result.report.problems,
        }
    return {"status": "ok", "tasks": last}


def create_app_with_ready_lifespan() -> FastAPI:
    """Way 1: the ready lifespan (settings and task configuration from the environment)."""
    app = FastAPI(title="librarian (ready lifespan)", lifespan=lifespan())
    app.include_router(router)
    return app


@asynccontextmanager
async def own_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Way 2: your own lifespan; the background tasks run for as long as the inner block."""
    settings = load_settings()  # your start-up work goes here (clients, caches, ...)
    async with background_runner(settings) as scheduler:
        app.state.scheduler = scheduler
        yield
    # Your shutdown work goes here: by now every background run has ended and been recorded.


def create_app_with_own_lifespan() -> FastAPI:
    app = FastAPI(title="librarian (own lifespan)", lifespan=own_lifespan)
    app.include_router(router)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--own-lifespan", action="store_true", help="use way 2")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    options = parser.parse_args()
    factory = (
        create_app_with_own_lifespan if options.own_lifespan else create_app_with_ready_lifespan
    )
    uvicorn.run(factory(), host=options.host, port=options.port, lifespan="on")


if __name__ == "__main__":
    main()
