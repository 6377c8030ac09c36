"""The web app serving the Librarian v2 protocol, and the router to mount it elsewhere.

Serve it on its own::

    app = create_app(context, lifespan=runner.lifespan(settings))

or mount the protocol routes in a host app (they answer with the protocol's error bodies
there too)::

    host.include_router(protocol_router(context))
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI

from librarian_async.api import checkin, clone, metrics, ping, search, upload
from librarian_async.api.errors import install_error_handlers
from librarian_async.api.state import ApiState, StoreOpener, package_version
from librarian_async.context import Context
from librarian_async.storage.convert import local_store

PREFIX = "/api/v2"
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def protocol_router(api: ApiState | Context) -> APIRouter:
    """Every protocol endpoint under ``/api/v2``, bound to ``api`` (or a new ApiState)."""
    state = api if isinstance(api, ApiState) else ApiState.create(api)
    router = APIRouter(prefix=PREFIX)
    for area in (ping, clone, checkin, search, upload):
        router.include_router(area.router(state))
    return router


def create_app(
    app_context: Context,
    *,
    lifespan: Lifespan | None = None,
    open_store: StoreOpener = local_store,
    credential_ttl: float = 60.0,
) -> FastAPI:
    """The protocol routes plus ``GET /metrics``; ``app.state.api`` is the shared ApiState."""
    api = ApiState.create(app_context, open_store=open_store, credential_ttl=credential_ttl)
    app = FastAPI(
        title=f"librarian {app_context.settings.name}",
        version=package_version(),
        lifespan=lifespan,
    )
    app.state.api = api
    app.include_router(protocol_router(api))
    app.include_router(metrics.router(api))
    install_error_handlers(app)
    return app
