"""Serve one librarian's API with uvicorn on a free loopback port, inside the demo's loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from librarian_async.errors import LibrarianError

LOOPBACK = "127.0.0.1"


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: Ctrl-C stops the whole demo at once."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LoopbackServer:
    """``app`` served on ``http://127.0.0.1:<port>`` between ``start()`` and ``stop()``."""

    def __init__(self, app: Any) -> None:
        self.socket = bound_socket()
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(app, lifespan="off", log_level="warning", log_config=None)
        self.server = QuietServer(config)
        self.serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        self.serving = asyncio.create_task(self.server.serve(sockets=[self.socket]))
        while not self.server.started:
            if self.serving.done():
                await self.serving  # raises what stopped it, if anything did
                raise LibrarianError(f"the server on port {self.port} did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            if self.serving is not None:
                await self.serving
        finally:
            self.socket.close()


def bound_socket() -> socket.socket:
    """A listening-ready socket on a free loopback port.

    TCP_NODELAY is set here because accepted connections inherit it: without it every small
    reply waits ~40 ms for a delayed ACK (uvicorn sets it only on sockets it creates).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((LOOPBACK, 0))
    return sock
