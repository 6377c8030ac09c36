"""Serve the API with uvicorn, the background tasks in its lifespan, stopping on signals."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from librarian_async.api.app import create_app
from librarian_async.config import Settings, TaskConfig
from librarian_async.context import Context
from librarian_async.runner import freeze_startup_objects, lifespan


async def serve(app: Context, settings: Settings, config: TaskConfig, host: str, port: int) -> bool:
    """Serve until SIGTERM/SIGINT; False when the server never started."""
    web = create_app(app, lifespan=lifespan(settings, config, app.wakeups))
    server = GracefulServer(uvicorn_config(web, host=host, port=port, lifespan="on"))
    await server.serve()
    return bool(server.started)


def uvicorn_config(web: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for our app (the tests serve with it too): httptools parses
    HTTP (h11, uvicorn's pure-Python fallback, parsed every upload byte in Python), and
    uvicorn sets up no logging of its own (the process's logging stays as configured)."""
    return uvicorn.Config(web, http="httptools", log_config=None, **options)


class GracefulServer(uvicorn.Server):
    """A uvicorn server that, once shut down by a signal, returns instead of re-raising it."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # The app, its routes and the lifespan's scheduler are built: without this, full
        # garbage collections walked them all and stalled the loop for 70-140 ms.
        freeze_startup_objects()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop)
        try:
            yield
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _stop(self) -> None:
        self.force_exit = self.should_exit  # a second signal: stop waiting for connections
        self.should_exit = True
