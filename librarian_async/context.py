"""The application context: what every task and API handler works with.

It is opened and closed in exactly one place (``open_context``); nothing else builds an
engine or reads settings, so tests can open as many independent contexts as they like.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from librarian_async.config import Settings
from librarian_async.db.engine import SessionMaker, create_engine, create_session_maker
from librarian_async.db.types import utcnow
from librarian_async.wakeups import Wakeups


@dataclass
class Context:
    """Settings plus the shared resources built from them."""

    settings: Settings
    engine: AsyncEngine
    sessions: SessionMaker
    now: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = field(default=time.monotonic)
    wakeups: Wakeups = field(default_factory=Wakeups)


@asynccontextmanager
async def open_context(
    settings: Settings, wakeups: Wakeups | None = None
) -> AsyncIterator[Context]:
    """Build a Context from settings and dispose of its resources on exit; ``wakeups``
    shared with another context of the process (serve's API and its background tasks)."""
    engine = create_engine(settings.resolved_database_url)
    sessions = create_session_maker(engine)
    try:
        yield Context(settings, engine, sessions, wakeups=wakeups or Wakeups())
    finally:
        await engine.dispose()
