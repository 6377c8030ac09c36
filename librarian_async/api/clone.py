"""The ``clone/*`` routes: staging on the receiver, progress reports on either side.

``clone/batch_complete`` (CALLBACK) is a librarian_async extension: ``clone/complete`` for
up to ``MAX_BATCH_COMPLETE`` transfers in one call (see
:func:`librarian_async.api.callbacks.complete_outgoing_batch`); a longer list is a 400.
"""

# No ``from __future__ import annotations``: FastAPI must see the handlers' annotations,
# which name dependencies local to ``router()``.

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from librarian_async.api import callbacks
from librarian_async.api.auth import Caller
from librarian_async.api.errors import ProtocolError, ProtocolRoute
from librarian_async.api.stage_rules import StagingRefused
from librarian_async.api.staging import StagingRequest, stage_batch
from librarian_async.api.state import ApiState
from librarian_async.api.upload import upload_url
from librarian_async.enums import AuthLevel, TransferStatus
from librarian_async.remote.schemas import (
    NO_TRANSFER,
    BatchCompleteRequest,
    BatchCompleteResponse,
    BatchStageRefusal,
    BatchStageRequest,
    BatchStageResponse,
    CompleteRequest,
    CompleteResponse,
    FailRequest,
    FailResponse,
    OngoingRequest,
    OngoingResponse,
    StagedRequest,
    StagedResponse,
    StageRefusal,
    StageRequest,
    StageResponse,
    UploadItem,
)

S = TransferStatus


async def batch_stage(
    api: ApiState, caller: Caller, request: BatchStageRequest, upload_at: str | None = None
) -> BatchStageResponse:
    staging = StagingRequest(
        request.source, request.total_size, request.uploads, request.accepts_providers, upload_at
    )
    try:
        staged = await stage_batch(api, caller, staging)
    except StagingRefused as refused:
        body = BatchStageRefusal(
            reason=refused.reason,
            suggested_remedy=refused.remedy,
            source_transfer_ids=refused.source_ids,
            destination_transfer_ids=refused.destination_ids,
        )
        raise ProtocolError(refused.status, body) from refused
    return BatchStageResponse(
        available_bytes_on_store=staged.available_bytes,
        store_name=staged.store_name,
        uploads=staged.uploads,
        async_transfer_providers=staged.providers,
    )


async def stage(
    api: ApiState, caller: Caller, request: StageRequest, upload_at: str | None = None
) -> StageResponse:
    item = UploadItem.model_validate(request.model_dump())
    staging = StagingRequest(
        request.source, request.upload_size, [item], request.accepts_providers, upload_at
    )
    try:
        staged = await stage_batch(api, caller, staging)
    except StagingRefused as refused:
        body = StageRefusal(
            reason=refused.reason,
            suggested_remedy=refused.remedy,
            source_transfer_id=request.source_transfer_id,
            destination_transfer_id=next(iter(refused.destination_ids), NO_TRANSFER),
        )
        raise ProtocolError(refused.status, body) from refused
    [upload] = staged.uploads
    return StageResponse(
        available_bytes_on_store=staged.available_bytes,
        store_name=staged.store_name,
        transfer_providers=staged.providers,
        **upload.model_dump(),
    )


def router(api: ApiState) -> APIRouter:
    routes = APIRouter(route_class=ProtocolRoute, tags=["clone"])
    appender = api.auth.require(AuthLevel.READAPPEND)
    callback = api.auth.require(AuthLevel.CALLBACK)

    @routes.post("/clone/batch_stage", status_code=201)
    async def clone_batch_stage(
        request: BatchStageRequest, caller: Annotated[Caller, Depends(appender)], http: Request
    ) -> BatchStageResponse:
        return await batch_stage(api, caller, request, upload_url(http))

    @routes.post("/clone/stage", status_code=201)
    async def clone_stage(
        request: StageRequest, caller: Annotated[Caller, Depends(appender)], http: Request
    ) -> StageResponse:
        return await stage(api, caller, request, upload_url(http))

    @routes.post("/clone/ongoing")
    async def clone_ongoing(
        request: OngoingRequest, caller: Annotated[Caller, Depends(appender)]
    ) -> OngoingResponse:
        await callbacks.report_progress(api, caller, request, S.INITIATED, S.ONGOING)
        return OngoingResponse.model_validate(request.model_dump())

    @routes.post("/clone/staged")
    async def clone_staged(
        request: StagedRequest, caller: Annotated[Caller, Depends(callback)]
    ) -> StagedResponse:
        await callbacks.report_progress(api, caller, request, S.ONGOING, S.STAGED)
        return StagedResponse.model_validate(request.model_dump())

    @routes.post("/clone/complete")
    async def clone_complete(
        request: CompleteRequest, caller: Annotated[Caller, Depends(callback)]
    ) -> CompleteResponse:
        return await callbacks.complete_outgoing(api, caller, request)

    @routes.post("/clone/batch_complete")
    async def clone_batch_complete(
        request: BatchCompleteRequest, caller: Annotated[Caller, Depends(callback)]
    ) -> BatchCompleteResponse:
        return await callbacks.complete_outgoing_batch(api, caller, request)

    @routes.post("/clone/fail")
    async def clone_fail(
        request: FailRequest, caller: Annotated[Caller, Depends(appender)]
    ) -> FailResponse:
        return await callbacks.fail_incoming(api, caller, request)

    return routes
