"""``search/file``: catalogued files matching a filter, with their copies here and elsewhere."""

# No ``from __future__ import annotations``: FastAPI must see the handlers' annotations,
# which name dependencies local to ``router()``.

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from librarian_async.api.auth import Caller
from librarian_async.api.errors import ProtocolError, ProtocolRoute
from librarian_async.api.state import ApiState
from librarian_async.db import search
from librarian_async.db.models import File, Instance
from librarian_async.enums import AuthLevel
from librarian_async.remote.schemas import (
    FileInfo,
    InstanceInfo,
    RemoteInstanceInfo,
    SearchFileRequest,
    SearchFileResponse,
)

MAX_RESULTS = 1024
"""Upper bound on ``max_results``, whatever a caller asks for."""


async def search_files(api: ApiState, request: SearchFileRequest) -> SearchFileResponse:
    """At most ``max_results`` files, newest first; 404 "No files found." when none match."""
    where = search.FileFilter(
        name=request.name,
        window=request.create_time_window,
        uploader=request.uploader,
        source=request.source,
    )
    async with api.context.sessions() as session:
        files = await search.find_files(session, where, limit=min(request.max_results, MAX_RESULTS))
        names = [file.name for file in files]
        instances = await search.instances_by_file(session, names)
        remote = await search.remote_copies_by_file(session, names)
    if not files:
        raise ProtocolError.of(404, "No files found.", "Widen the search.")
    return SearchFileResponse(
        [_file_info(file, instances[file.name], remote[file.name]) for file in files]
    )


def _file_info(
    file: File, instances: list[Instance], remote: list[tuple[str, datetime]]
) -> FileInfo:
    return FileInfo(
        name=file.name,
        create_time=file.create_time,
        size=file.size,
        checksum=file.checksum,
        uploader=file.uploader,
        source=file.source,
        instances=[
            InstanceInfo(
                path=instance.path,
                store_id=instance.store_id,
                deletion_policy=instance.deletion_policy,
                created_time=instance.created_time,
                available=instance.available,
            )
            for instance in instances
        ],
        remote_instances=[
            RemoteInstanceInfo(librarian_name=name, copy_time=copy_time)
            for name, copy_time in remote
        ],
    )


def router(api: ApiState) -> APIRouter:
    routes = APIRouter(route_class=ProtocolRoute, tags=["search"])
    reader = api.auth.require(AuthLevel.READONLY)

    @routes.post("/search/file")
    async def search_file(
        request: SearchFileRequest, _: Annotated[Caller, Depends(reader)]
    ) -> SearchFileResponse:
        return await search_files(api, request)

    return routes
