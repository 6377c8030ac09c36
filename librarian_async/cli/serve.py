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
from typing import Any

from librarian_async.cli.common import database
from librarian_async.config import Settings
from librarian_async.runner import task_config_of, validate_against_catalogue


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the HTTP API and run the background tasks")
    serve.add_argument("--host", help="address to bind (default: LIBRARIAN_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default: LIBRARIAN_PORT, 21108)")
    serve.set_defaults(handler=serve_api)


async def serve_api(args: argparse.Namespace, settings: Settings) -> int:
    from librarian_async.api.server import serve  # the web stack loads only for serve

    config = task_config_of(settings)
    async with database(settings) as app:
        await validate_against_catalogue(app, config)
        host, port = args.host or settings.host, args.port or settings.port
        started = await serve(app, settings, config, host, port)
    return 0 if started else 1
