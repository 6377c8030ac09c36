"""How much CPU the ``serve`` process spends receiving an upload body, by socket read size.

Run by hand:

    .venv/bin/python benchmarks/bench_upload_read.py

A uvicorn server in a child process (httptools, as ``serve`` runs it) answers POSTs with
an app that only counts the body's bytes; the client sends 1 GiB as 8 streamed requests of
128 MiB on loopback, as the http transfer method sends a batch. Printed per protocol: the
server's CPU seconds per GiB (user + system, from /proc) and the wall-clock rate. Hashing
and writing the files come on top of this in the real endpoint.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from librarian_async.api.server import BulkReadProtocol

MIB = 1024 * 1024
REQUESTS, REQUEST_MIB = 8, 128
ROUNDS = 3


async def counting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    received, more = 0, True
    while more:
        message = await receive()
        received += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(received).encode()})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(protocol: type[HttpToolsProtocol], port: int) -> int:
    pid = os.fork()
    if pid == 0:
        config = uvicorn.Config(counting_app, port=port, log_level="warning", http=protocol)
        uvicorn.Server(config).run()
        os._exit(0)
    return pid


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_gib(port: int) -> None:
    block = os.urandom(MIB)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(REQUEST_MIB):
            yield block

    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(REQUESTS):
            answer = await client.post(f"http://127.0.0.1:{port}/", content=body())
            assert answer.text == str(REQUEST_MIB * MIB), answer.text


def measure(protocol: type[HttpToolsProtocol]) -> None:
    port = free_port()
    pid = start_server(protocol, port)
    try:
        time.sleep(1.5)  # start-up
        for _ in range(ROUNDS):
            used, started = cpu_seconds(pid), time.perf_counter()
            asyncio.run(send_gib(port))
            seconds = time.perf_counter() - started
            gib = REQUESTS * REQUEST_MIB / 1024
            cpu = (cpu_seconds(pid) - used) / gib
            rate = gib * 1024 / seconds
            print(f"{protocol.__name__:18} server CPU {cpu:5.2f} s/GiB  {rate:6.0f} MiB/s")
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    for protocol in (HttpToolsProtocol, BulkReadProtocol):
        measure(protocol)
