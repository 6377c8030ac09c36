"""Wire models of the Librarian v2 protocol (PROTOCOL §2), shared by our API and our client.

Conventions of the wire, kept exactly:

* enums travel as integers (``TransferStatus``, ``DeletionPolicy``);
* objects keyed by transfer id have decimal-string keys (``{"12": 3}``): the models use
  ``dict[int, ...]``, which pydantic writes with string keys and reads back as ints;
* datetimes are ISO 8601; a naive time from a peer is taken as UTC;
* transfer methods are ``{method_name: {...method fields}}``, preferred method first.

Readers are tolerant: unknown fields from peers are ignored. Writers are exact: a response
carries the declared fields only. ``accepts_providers`` is a librarian_async extension that
deployed peers ignore (PROTOCOL §4).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, StringConstraints

from librarian_async.enums import DeletionPolicy, TransferStatus

NO_TRANSFER = -1
"""``destination_transfer_id`` of a single-item refusal that involves no transfer of ours."""


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UTCDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Providers = dict[str, dict[str, Any]]
"""Transfer methods a store offers: ``{method_name: {...method fields}}``, in order."""


class WireModel(BaseModel):
    """Base of every protocol body: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")


# --- errors -------------------------------------------------------------------------------


class ErrorBody(WireModel):
    """Every non-2xx body: ``{reason, suggested_remedy, ...}`` at top level."""

    reason: str
    suggested_remedy: str = "Please try again later."


class BatchStageRefusal(ErrorBody):
    """A refused ``clone/batch_stage``: the items of the list that decided the status."""

    source_transfer_ids: list[int] = Field(default_factory=list)
    destination_transfer_ids: list[int] = Field(default_factory=list)


class StageRefusal(ErrorBody):
    """A refused ``clone/stage``; ``destination_transfer_id`` is -1 when no transfer exists."""

    source_transfer_id: int
    destination_transfer_id: int = NO_TRANSFER


# --- ping ---------------------------------------------------------------------------------


class PingRequest(WireModel):
    pass


class PingResponse(WireModel):
    name: str
    description: str


# --- clone: staging -----------------------------------------------------------------------


class UploadItem(WireModel):
    """One file of a ``clone/batch_stage`` request."""

    upload_size: int
    upload_checksum: str
    upload_name: str
    destination_location: str
    uploader: str
    source_transfer_id: int


class BatchStageRequest(WireModel):
    uploads: list[UploadItem]
    source: str
    total_size: int
    accepts_providers: list[str] | None = None


class StagedUpload(WireModel):
    """Where one file of a batch is to be put: ``staging_location`` is an absolute path."""

    staging_name: str
    staging_location: str
    upload_name: str
    destination_location: str
    source_transfer_id: int
    destination_transfer_id: int


class BatchStageResponse(WireModel):
    available_bytes_on_store: int
    store_name: str
    uploads: list[StagedUpload]
    async_transfer_providers: Providers


class StageRequest(WireModel):
    """``clone/stage``: one file (SneakerNet ingest)."""

    upload_size: int
    upload_checksum: str
    upload_name: str
    destination_location: str
    uploader: str
    source: str
    source_transfer_id: int
    accepts_providers: list[str] | None = None


class StageResponse(WireModel):
    available_bytes_on_store: int
    store_name: str
    staging_name: str
    staging_location: str
    upload_name: str
    destination_location: str
    transfer_providers: Providers
    source_transfer_id: int
    destination_transfer_id: int


# --- clone: progress callbacks ------------------------------------------------------------


class TransferPair(WireModel):
    """The sender's outgoing id and the receiver's incoming id of one transfer."""

    source_transfer_id: int
    destination_transfer_id: int


class OngoingRequest(TransferPair):
    pass


class OngoingResponse(TransferPair):
    pass


class StagedRequest(TransferPair):
    pass


class StagedResponse(TransferPair):
    success: bool = True


class CompleteRequest(TransferPair):
    """Sent by the receiver to the sender; ``store_id`` is the receiver's store."""

    store_id: int


class CompleteResponse(TransferPair):
    pass


class FailRequest(TransferPair):
    """Sent by the sender to the receiver."""

    reason: str


class FailResponse(TransferPair):
    success: bool


# --- checkin ------------------------------------------------------------------------------


class CheckinUpdateRequest(WireModel):
    """``source_transfer_ids`` are the callee's outgoing rows, the others its incoming rows.

    ``verified_stats`` (a librarian_async extension, ignored by other librarians): with
    ``new_status`` STAGED, the staged files that the sender hashed against their checksums
    as it wrote them (``local`` method), as incoming transfer id -> stat fingerprint
    (:data:`librarian_async.transfer.base.VerifiedStats`); left out of the body when None.
    """

    source_transfer_ids: list[int] = Field(default_factory=list)
    destination_transfer_ids: list[int] = Field(default_factory=list)
    new_status: TransferStatus
    verified_stats: dict[int, Annotated[str, StringConstraints(max_length=128)]] | None = None


class CheckinUpdateResponse(WireModel):
    modified_source_transfer_ids: list[int]
    modified_destination_transfer_ids: list[int]
    unmodified_source_transfer_ids: list[int]
    unmodified_destination_transfer_ids: list[int]
    reasons: list[str]


class CheckinStatusRequest(WireModel):
    source_transfer_ids: list[int] = Field(default_factory=list)
    destination_transfer_ids: list[int] = Field(default_factory=list)


class CheckinStatusResponse(WireModel):
    """``None`` for an id that is unknown or not the caller's."""

    source_transfer_status: dict[int, TransferStatus | None]
    destination_transfer_status: dict[int, TransferStatus | None]


# --- search -------------------------------------------------------------------------------


class SearchFileRequest(WireModel):
    name: str | None = None
    create_time_window: tuple[UTCDatetime, UTCDatetime] | None = None
    uploader: str | None = None
    source: str | None = None
    max_results: int = Field(64, ge=1)


class InstanceInfo(WireModel):
    path: str
    store_id: int
    deletion_policy: DeletionPolicy
    created_time: UTCDatetime
    available: bool


class RemoteInstanceInfo(WireModel):
    librarian_name: str
    copy_time: UTCDatetime


class FileInfo(WireModel):
    name: str
    create_time: UTCDatetime
    size: int
    checksum: str
    uploader: str
    source: str
    instances: list[InstanceInfo]
    remote_instances: list[RemoteInstanceInfo]


class SearchFileResponse(RootModel[list[FileInfo]]):
    pass


# --- validation and corruption (served by later work; the client already speaks them) ----


class ValidateFileRequest(WireModel):
    file_name: str


class ValidationResult(WireModel):
    librarian: str
    store: int | str
    instance_id: int
    original_checksum: str
    original_size: int
    current_checksum: str
    current_size: int
    computed_same_checksum: bool


class ValidateFileResponse(RootModel[list[ValidationResult]]):
    pass


class CorruptRequest(WireModel):
    """``corrupt/prepare`` and ``corrupt/resend``."""

    file_name: str
    librarian_name: str


class CorruptPrepareResponse(WireModel):
    ready: bool


class CorruptResendResponse(WireModel):
    success: bool
    destination_transfer_id: int


# --- upload (a librarian_async extension: the bytes of the ``http`` transfer method) ------


class UploadRequest(WireModel):
    """``POST upload?ids=12,13,14``: the incoming transfers whose bytes the body holds.

    The body (``application/octet-stream``) is the bytes of these transfers' files
    concatenated in this order, without any framing: the receiver knows each transfer's
    size and splits the stream by size. ``Content-Length``, when sent, must be the sum of
    the sizes. In the query, the ids are decimal and comma-separated, each at most once.
    """

    destination_transfer_ids: list[int]

    def query(self) -> dict[str, str]:
        return {"ids": ",".join(map(str, self.destination_transfer_ids))}

    @classmethod
    def from_query(cls, ids: str) -> UploadRequest:
        """Read the ``ids`` query parameter; ValueError saying what is wrong with it."""
        parts = ids.split(",")
        if not all(part.isascii() and part.isdigit() for part in parts):
            raise ValueError(f"ids {ids[:100]!r} is not a comma-separated list of transfer ids")
        numbers = [int(part) for part in parts]
        if len(set(numbers)) != len(numbers):
            raise ValueError("ids names a transfer more than once")
        return cls(destination_transfer_ids=numbers)


class UploadRefusal(ErrorBody):
    """A refused or failed upload: the transfers whose bytes were not staged because of it."""

    destination_transfer_ids: list[int] = Field(default_factory=list)


class UploadResponse(WireModel):
    """Every file of the upload is at its staging location with its size and checksum."""

    destination_transfer_ids: list[int]
    bytes: int


# --- batch complete (a librarian_async extension: many ``clone/complete`` in one call) ----

MAX_BATCH_COMPLETE = 10_000
"""The most items one ``clone/batch_complete`` may carry; a longer list is refused (400)."""


class BatchCompleteRequest(WireModel):
    """``clone/batch_complete`` (on the sender): ``clone/complete`` for each item.

    Deployed peers lack this endpoint (they answer 404 or 405); a caller then falls back to
    one ``clone/complete`` per item.
    """

    items: list[CompleteRequest] = Field(max_length=MAX_BATCH_COMPLETE)


class CompleteRefusal(ErrorBody):
    """One item of a batch that was not completed; ``status`` is what ``clone/complete``
    would have answered for it (400 unknown transfer or destination, 406 wrong state)."""

    source_transfer_id: int
    destination_transfer_id: int
    status: int


class BatchCompleteResponse(WireModel):
    """Per item: completed (``source_transfer_ids``, also when it already was) or refused.

    One bad item never fails the call; every item of the request is in exactly one list.
    """

    completed: list[int]
    refused: list[CompleteRefusal] = Field(default_factory=list)
