"""Serve an ASGI app with a real uvicorn server on a free loopback port, for one block."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from librarian_async.api.server import uvicorn_config


class Server:
    """One uvicorn server on a loopback port; ``stop(abrupt=True)`` looks like a crash."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it; without it every small reply waits ~40 ms for a
        # delayed ACK (uvicorn sets it only on sockets it creates itself).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn_config(app, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.serving: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self.serving = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        for _ in range(300):
            if self.server.started or self.serving.done():
                break
            await asyncio.sleep(0.01)
        assert self.server.started, "uvicorn did not start"
        return self.port

    async def stop(self, *, abrupt: bool = False) -> None:
        """Stop serving; ``abrupt`` resets open connections instead of finishing them."""
        if abrupt:
            for connection in list(self.server.server_state.connections):
                connection.transport.abort()  # type: ignore[attr-defined]
        self.server.should_exit = True
        if self.serving is not None:
            await asyncio.wait_for(self.serving, timeout=30)
        self.sock.close()


@asynccontextmanager
async def served(app: Any, port: int = 0) -> AsyncIterator[int]:
    """Yield the port on which ``app`` answers until the block ends (a free one unless
    ``port`` is given: serving again on the port of a stopped server is a restart)."""
    server = Server(app, port)
    await server.start()
    try:
        yield server.port
    finally:
        await server.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
