"""``ping/`` (anyone) and ``ping/logged`` (proves the caller's credentials)."""

# No ``from __future__ import annotations``: FastAPI must see the handlers' annotations,
# which name dependencies local to ``router()``.

from typing import Annotated

from fastapi import APIRouter, Depends

from librarian_async.api.auth import Caller
from librarian_async.api.errors import ProtocolRoute
from librarian_async.api.state import ApiState
from librarian_async.enums import AuthLevel
from librarian_async.remote.schemas import PingRequest, PingResponse


def router(api: ApiState) -> APIRouter:
    routes = APIRouter(route_class=ProtocolRoute, tags=["ping"])
    anyone = api.auth.require(AuthLevel.NONE)
    reader = api.auth.require(AuthLevel.READONLY)

    def answer() -> PingResponse:
        return PingResponse(name=api.context.settings.name, description=api.description)

    @routes.post("/ping/")
    async def ping(
        _: Annotated[Caller, Depends(anyone)], request: PingRequest | None = None
    ) -> PingResponse:
        return answer()

    @routes.post("/ping/logged")
    async def ping_logged(
        _: Annotated[Caller, Depends(reader)], request: PingRequest | None = None
    ) -> PingResponse:
        return answer()

    return routes
