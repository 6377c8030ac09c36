"""How much CPU a uvicorn server spends receiving upload bodies, with and without
:func:`librarian_async.heap.keep_buffer_pages`.

Run by hand:

    .venv/bin/python benchmarks/bench_upload_read.py

The server is a separate process with our uvicorn configuration (``api.server.uvicorn_config``)
around an app that only counts the body's bytes; the client sends 1 GiB as 8 streamed
requests of 128 MiB on loopback, as the http transfer method sends a batch. Printed for
each round: the server's CPU seconds (user + system) and minor page faults per GiB, from
/proc, and the wall-clock rate. (The real ``serve`` keeps pieces of the body longer and
took far fewer page faults: see the heap module.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_local import usage

MIB = 1024 * 1024
REQUESTS, REQUEST_MIB = 8, 128
ROUNDS = 3
SERVER = """
import sys
import uvicorn
import librarian_async.api.app  # what serve imports
from librarian_async.api.server import uvicorn_config
from librarian_async.heap import keep_buffer_pages

async def counting_app(scope, receive, send):
    if scope["type"] != "http":
        return
    received, more = 0, True
    while more:
        message = await receive()
        received += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(received).encode()})

if sys.argv[2] == "kept":
    keep_buffer_pages()
uvicorn.Server(uvicorn_config(counting_app, port=int(sys.argv[1]), log_level="warning")).run()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def send_gib(port: int) -> None:
    block = os.urandom(MIB)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(REQUEST_MIB):
            yield block

    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(REQUESTS):
            answer = await client.post(f"http://127.0.0.1:{port}/", content=body())
            assert answer.text == str(REQUEST_MIB * MIB), answer.text


def wait_until_listening(port: int) -> None:
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"no server on port {port}")


def measure(pages: str) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), pages])
    try:
        wait_until_listening(port)
        gib = REQUESTS * REQUEST_MIB / 1024
        for _ in range(ROUNDS):
            (cpu, faults), started = usage(server.pid), time.perf_counter()
            asyncio.run(send_gib(port))
            seconds = time.perf_counter() - started
            cpu_after, faults_after = usage(server.pid)
            print(
                f"buffer pages {pages:5}  server CPU {(cpu_after - cpu) / gib:5.2f} s/GiB  "
                f"{(faults_after - faults) / gib:9,.0f} page faults/GiB  "
                f"{gib * 1024 / seconds:6.0f} MiB/s"
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()


if __name__ == "__main__":
    for pages in ("freed", "kept"):
        measure(pages)
