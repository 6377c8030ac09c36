"""Serve the API with uvicorn, the background tasks in its lifespan, stopping on signals."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from librarian_async.api.app import create_app
from librarian_async.config import Settings, TaskConfig
from librarian_async.context import Context
from librarian_async.runner import freeze_startup_objects, lifespan

SOCKET_READ_SIZE = 1024 * 1024


async def serve(app: Context, settings: Settings, config: TaskConfig, host: str, port: int) -> bool:
    """Serve until SIGTERM/SIGINT; False when the server never started."""
    web = create_app(app, lifespan=lifespan(settings, config))
    server = GracefulServer(uvicorn_config(web, host=host, port=port, lifespan="on"))
    await server.serve()
    return bool(server.started)


def uvicorn_config(web: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for our app: our protocol, and no logging set-up of its own
    (the process's logging stays as configured)."""
    return uvicorn.Config(web, http=BulkReadProtocol, log_config=None, **options)


class BulkReadProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol reading up to SOCKET_READ_SIZE bytes from the socket at a
    time, not asyncio's 256 KiB: every read of an upload's body also pauses and resumes the
    socket (uvicorn's flow control), so 4x fewer reads cut the server's CPU time per GiB
    received from 0.8-1.0 s to 0.45-0.6 s (benchmarks/bench_upload_read.py)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if hasattr(transport, "max_size"):  # the selector event loop's socket transport
            transport.max_size = SOCKET_READ_SIZE


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
