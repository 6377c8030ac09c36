"""Start the background tasks: from the CLI, or inside a host ASGI server's lifespan.

Embedding in FastAPI or Starlette::

    from fastapi import FastAPI
    from librarian_async.runner import lifespan

    app = FastAPI(lifespan=lifespan())          # settings from LIBRARIAN_* variables

or, to combine with your own start-up work::

    @asynccontextmanager
    async def my_lifespan(app):
        async with background_runner(settings) as scheduler:
            app.state.scheduler = scheduler
            yield
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from librarian_async.config import Settings, TaskConfig, check_references, load_task_config
from librarian_async.config import load_settings as _load_settings
from librarian_async.context import Context, open_context
from librarian_async.db import catalog, peers
from librarian_async.errors import ConfigError
from librarian_async.scheduler import Scheduler
from librarian_async.tasks import REGISTRY
from librarian_async.tasks.base import TaskFunction
from librarian_async.wakeups import Wakeups

log = logging.getLogger(__name__)


def task_config_of(settings: Settings) -> TaskConfig:
    """The task configuration named by LIBRARIAN_BACKGROUND_CONFIG (empty when unset)."""
    if settings.background_config is None:
        return TaskConfig()
    return load_task_config(settings.background_config)


async def validate_against_catalogue(
    app: Context, config: TaskConfig, registry: Mapping[str, TaskFunction] = REGISTRY
) -> None:
    """Refuse unknown stores and librarians, and task types this version cannot run."""
    async with app.sessions() as session:
        problems = check_references(
            config, await catalog.store_names(session), await peers.librarian_names(session)
        )
    for label, entry in config.labelled():
        if entry.task_type not in registry:
            problems.append(f"{label}: task type {entry.task_type!r} is not implemented yet")
    if problems:
        raise ConfigError(problems)


async def build_scheduler(
    app: Context,
    config: TaskConfig,
    registry: Mapping[str, TaskFunction] = REGISTRY,
    only: set[str] | None = None,
) -> Scheduler:
    """A scheduler for the entries of ``config`` (or only those named in ``only``)."""
    await validate_against_catalogue(app, config, registry)
    entries = [entry for entry in config.entries if not only or entry.task_name in only]
    if only and len(entries) != len(only):
        missing = only - {entry.task_name for entry in entries}
        raise ConfigError([f"--only: no task named {name!r}" for name in sorted(missing)])
    # Import each task's module now, while nothing waits on the loop: imported inside its
    # first run, it stalled the loop (and serve's API) for 33-35 ms.
    for entry in entries:
        registry.get(entry.task_type)
    return Scheduler(app, entries, registry)


@asynccontextmanager
async def background_runner(
    settings: Settings | None = None,
    config: TaskConfig | None = None,
    wakeups: Wakeups | None = None,
) -> AsyncIterator[Scheduler]:
    """Run the configured background tasks for as long as the ``async with`` block lasts
    (``wakeups``: shared with the API's context, so that its requests can wake tasks).

    On exit the scheduler stops starting runs, lets in-flight runs finish within
    ``settings.shutdown_grace`` seconds, cancels the rest and closes the database.
    """
    settings = settings or _load_settings()
    config = config if config is not None else task_config_of(settings)
    async with open_context(settings, wakeups) as app:
        scheduler = await build_scheduler(app, config)
        runner = asyncio.create_task(scheduler.run_forever(), name="librarian-background")
        try:
            yield scheduler
        finally:
            scheduler.stop()
            # Not suppressed: a CancelledError here is the host cancelling us mid-drain
            # (the runner only ever sees it through us), and it must reach the host.
            await runner


def lifespan(
    settings: Settings | None = None,
    config: TaskConfig | None = None,
    wakeups: Wakeups | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A Starlette/FastAPI ``lifespan`` that runs the background tasks beside the app (pass
    the app context's ``wakeups``, and a STAGED ``checkin/update`` wakes receive_clone)."""

    @asynccontextmanager
    async def run_beside(app: Any) -> AsyncIterator[None]:
        async with background_runner(settings, config, wakeups) as scheduler:
            if hasattr(app, "state"):
                app.state.scheduler = scheduler
            yield

    return run_beside


def freeze_startup_objects() -> None:
    """Exempt everything built at start-up (modules, mappers, settings) from the cyclic
    garbage collector: a full collection walking them stalled the event loop for ~50 ms
    during big runs; afterwards only objects created by the runs themselves are scanned.
    (No collection first: it cost 25-45 ms of every start for a few kB of import garbage.)"""
    gc.freeze()
