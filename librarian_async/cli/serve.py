"""``serve``: the HTTP API (protocol routes and ``/metrics``) with the background tasks.

One process: uvicorn serves :func:`librarian_async.api.create_app`, whose lifespan runs the
tasks of LIBRARIAN_BACKGROUND_CONFIG (none when unset) exactly like ``run`` does. The task
configuration is checked against the catalogue before the port is opened, so a bad one is
one clear error line. SIGTERM or SIGINT stops accepting requests, lets in-flight runs finish
within LIBRARIAN_SHUTDOWN_GRACE seconds and exits 0. The API and the tasks each have their
own connection pool.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from librarian_async.api import create_app
from librarian_async.cli.common import database
from librarian_async.config import Settings
from librarian_async.runner import lifespan, task_config_of, validate_against_catalogue


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the HTTP API and run the background tasks")
    serve.add_argument("--host", help="address to bind (default: LIBRARIAN_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default: LIBRARIAN_PORT, 21108)")
    serve.set_defaults(handler=serve_api)


async def serve_api(args: argparse.Namespace, settings: Settings) -> int:
    config = task_config_of(settings)
    async with database(settings) as app:
        await validate_against_catalogue(app, config)
        web = create_app(app, lifespan=lifespan(settings, config))
        server = GracefulServer(
            uvicorn.Config(
                web,
                host=args.host or settings.host,
                port=args.port or settings.port,
                lifespan="on",
                log_config=None,
            )
        )
        await server.serve()
    return 0 if server.started else 1


class GracefulServer(uvicorn.Server):
    """A uvicorn server that, once shut down by a signal, returns instead of re-raising it."""

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
