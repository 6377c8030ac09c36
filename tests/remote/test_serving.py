"""The uvicorn configuration that ``serve`` (and every served test app) runs with."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx

from librarian_async.api.server import SOCKET_READ_SIZE
from remote.serving import Server


async def digest_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers a POST with the MD5 of its body."""
    if scope["type"] != "http":
        return
    hasher, more = hashlib.md5(), True
    while more:
        message = await receive()
        hasher.update(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": hasher.hexdigest().encode()})


async def test_connections_read_big_socket_chunks_and_bodies_arrive_whole() -> None:
    server = Server(digest_app)
    await server.start()
    try:
        body = os.urandom(3 * SOCKET_READ_SIZE + 5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            answer = await client.post("/", content=body)
            assert answer.text == hashlib.md5(body).hexdigest()
            connections = list(server.server.server_state.connections)
            assert connections
            for connection in connections:
                assert connection.transport.max_size == SOCKET_READ_SIZE  # type: ignore[attr-defined]
    finally:
        await server.stop()
