"""Calling a peer librarian: one typed method per protocol endpoint.

Every call has connect and read timeouts. Calls that are safe to repeat are retried with
jittered exponential backoff when the peer cannot be reached, times out or answers 502, 503
or 504; a refusal (any other error status) is never retried. A call that is not safe to
repeat is only retried when the connection could not even be opened (the peer never saw
it). Which endpoints are safe to repeat (``idempotent`` in :data:`ENDPOINTS`):

* yes: ``ping/``, ``ping/logged``, ``search/file``, ``validate/file``, ``corrupt/prepare``
  (they read); ``checkin/status`` (reads); ``checkin/update`` (asking again for the status
  a transfer already has changes nothing); ``clone/complete`` (idempotent on our peers,
  and completing twice is harmless on deployed ones) and ``clone/batch_complete`` (the same
  per item); ``clone/fail`` (failing a FAILED transfer again changes nothing);
* no: ``clone/batch_stage`` and ``clone/stage`` (each call creates transfers),
  ``clone/ongoing`` and ``clone/staged`` (a repeat is refused with 406 once the first one
  went through), ``corrupt/resend`` (queues a resend), ``upload`` (its body is a stream
  that can be sent only once; the sender retries the whole batch instead).

``clone/batch_complete`` is a librarian_async extension (see
:class:`librarian_async.remote.schemas.BatchCompleteRequest`): deployed peers answer it with
404 or 405, and the caller falls back to ``clone/complete``.

``upload`` (the ``http`` transfer method, a librarian_async extension) is posted to the
absolute URL that the peer advertised, with the same credentials; its body streams the
concatenated bytes of the files (see :class:`librarian_async.remote.schemas.UploadRequest`).

Use as ``async with PeerClient.from_librarian(row, key, settings) as peer: ...``; tests pass
``transport=httpx.ASGITransport(app=...)`` to talk to an app in process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from librarian_async.config import Settings
from librarian_async.remote import schemas as wire
from librarian_async.remote.errors import (
    PeerProtocolError,
    PeerRefusedError,
    PeerUnreachableError,
    refusal,
)
from librarian_async.security import decrypt_secret

log = logging.getLogger(__name__)

Reply = TypeVar("Reply", bound=BaseModel)
NO_FILES = "No files found."


class PeerRow(Protocol):
    """What a client needs of a ``librarians`` row."""

    url: str
    port: int
    authenticator: str


@dataclass(frozen=True)
class Endpoint(Generic[Reply]):
    path: str
    reply: type[Reply]
    idempotent: bool


PING = Endpoint("ping/", wire.PingResponse, idempotent=True)
PING_LOGGED = Endpoint("ping/logged", wire.PingResponse, idempotent=True)
BATCH_STAGE = Endpoint("clone/batch_stage", wire.BatchStageResponse, idempotent=False)
STAGE = Endpoint("clone/stage", wire.StageResponse, idempotent=False)
ONGOING = Endpoint("clone/ongoing", wire.OngoingResponse, idempotent=False)
STAGED = Endpoint("clone/staged", wire.StagedResponse, idempotent=False)
COMPLETE = Endpoint("clone/complete", wire.CompleteResponse, idempotent=True)
BATCH_COMPLETE = Endpoint("clone/batch_complete", wire.BatchCompleteResponse, idempotent=True)
FAIL = Endpoint("clone/fail", wire.FailResponse, idempotent=True)
CHECKIN_UPDATE = Endpoint("checkin/update", wire.CheckinUpdateResponse, idempotent=True)
CHECKIN_STATUS = Endpoint("checkin/status", wire.CheckinStatusResponse, idempotent=True)
SEARCH_FILE = Endpoint("search/file", wire.SearchFileResponse, idempotent=True)
VALIDATE_FILE = Endpoint("validate/file", wire.ValidateFileResponse, idempotent=True)
CORRUPT_PREPARE = Endpoint("corrupt/prepare", wire.CorruptPrepareResponse, idempotent=True)
CORRUPT_RESEND = Endpoint("corrupt/resend", wire.CorruptResendResponse, idempotent=False)
ENDPOINTS = (
    PING,
    PING_LOGGED,
    BATCH_STAGE,
    STAGE,
    ONGOING,
    STAGED,
    COMPLETE,
    FAIL,
    CHECKIN_UPDATE,
    CHECKIN_STATUS,
    SEARCH_FILE,
    VALIDATE_FILE,
    CORRUPT_PREPARE,
    CORRUPT_RESEND,
)
"""The endpoints of PROTOCOL §2; the extensions of librarian_async are not among them."""
EXTENSIONS = (BATCH_COMPLETE,)
"""Endpoints only librarian_async peers serve (``upload`` is posted to an advertised URL)."""


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the n-th wait is ``base * 2**n`` (capped), times 0.5-1."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 10.0
    statuses: frozenset[int] = frozenset({502, 503, 504})

    def delay(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2.0**retry)
        return ceiling * rng.uniform(0.5, 1.0)


class PeerClient:
    """An HTTP client for one peer; close it (``async with``) when done."""

    def __init__(
        self,
        url: str,
        port: int,
        user: str,
        password: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = f"{url.rstrip('/')}:{port}/api/v2/"
        self.retry = retry or RetryPolicy()
        self.calls = 0  # HTTP requests sent, retries included
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=(user, password),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport,
            verify=_tls_context(),
        )

    @classmethod
    def from_librarian(
        cls,
        librarian: PeerRow,
        encryption_key: bytes | None,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> PeerClient:
        """A client for a ``librarians`` row, with its decrypted ``user:password``."""
        user, _, password = decrypt_secret(encryption_key, librarian.authenticator).partition(":")
        return cls(
            librarian.url,
            librarian.port,
            user,
            password,
            connect_timeout=settings.http_connect_timeout,
            read_timeout=settings.http_read_timeout,
            retry=retry,
            transport=transport,
        )

    async def __aenter__(self) -> PeerClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- endpoints ------------------------------------------------------------------------

    async def ping(self) -> wire.PingResponse:
        return await self.call(PING, wire.PingRequest())

    async def ping_logged(self) -> wire.PingResponse:
        return await self.call(PING_LOGGED, wire.PingRequest())

    async def batch_stage(self, request: wire.BatchStageRequest) -> wire.BatchStageResponse:
        return await self.call(BATCH_STAGE, request)

    async def stage(self, request: wire.StageRequest) -> wire.StageResponse:
        return await self.call(STAGE, request)

    async def clone_ongoing(self, request: wire.OngoingRequest) -> wire.OngoingResponse:
        return await self.call(ONGOING, request)

    async def clone_staged(self, request: wire.StagedRequest) -> wire.StagedResponse:
        return await self.call(STAGED, request)

    async def clone_complete(self, request: wire.CompleteRequest) -> wire.CompleteResponse:
        return await self.call(COMPLETE, request)

    async def batch_complete(
        self, request: wire.BatchCompleteRequest
    ) -> wire.BatchCompleteResponse:
        """``clone/complete`` for many transfers; 404 or 405 from a peer without it."""
        return await self.call(BATCH_COMPLETE, request)

    async def clone_fail(self, request: wire.FailRequest) -> wire.FailResponse:
        return await self.call(FAIL, request)

    async def checkin_update(
        self, request: wire.CheckinUpdateRequest
    ) -> wire.CheckinUpdateResponse:
        return await self.call(CHECKIN_UPDATE, request)

    async def checkin_status(
        self, request: wire.CheckinStatusRequest
    ) -> wire.CheckinStatusResponse:
        return await self.call(CHECKIN_STATUS, request)

    async def search_file(self, request: wire.SearchFileRequest) -> list[wire.FileInfo]:
        """Matching files; an empty list when the peer says "No files found." (404)."""
        try:
            return (await self.call(SEARCH_FILE, request)).root
        except PeerRefusedError as refused:
            if refused.status == 404 and refused.reason == NO_FILES:
                return []
            raise

    async def validate_file(self, request: wire.ValidateFileRequest) -> list[wire.ValidationResult]:
        return (await self.call(VALIDATE_FILE, request)).root

    async def corrupt_prepare(self, request: wire.CorruptRequest) -> wire.CorruptPrepareResponse:
        return await self.call(CORRUPT_PREPARE, request)

    async def corrupt_resend(self, request: wire.CorruptRequest) -> wire.CorruptResendResponse:
        return await self.call(CORRUPT_RESEND, request)

    async def upload(
        self,
        url: str,
        destination_transfer_ids: Sequence[int],
        content: AsyncIterable[bytes],
        total_size: int,
    ) -> wire.UploadResponse:
        """Stream ``content`` (``total_size`` bytes: the files of these transfers, in this
        order) to the peer's upload endpoint ``url``, as advertised by its ``http`` method."""
        endpoint = Endpoint(url, wire.UploadResponse, idempotent=False)
        request = wire.UploadRequest(destination_transfer_ids=list(destination_transfer_ids))
        headers = {"Content-Length": str(total_size), "Content-Type": "application/octet-stream"}

        async def post() -> httpx.Response:
            self.calls += 1
            return await self._http.post(
                url, params=request.query(), content=content, headers=headers
            )

        return self._reply(endpoint, await self._send(endpoint, post))

    # --- plumbing -------------------------------------------------------------------------

    async def call(self, endpoint: Endpoint[Reply], request: BaseModel) -> Reply:
        """POST ``request`` to ``endpoint`` and return its reply model, or raise a PeerError."""
        payload = request.model_dump(mode="json", exclude_none=True)
        response = await self._send(endpoint, lambda: self._post(endpoint.path, payload))
        return self._reply(endpoint, response)

    def _reply(self, endpoint: Endpoint[Reply], response: httpx.Response) -> Reply:
        if not response.is_success:
            raise refusal(response.status_code, response.content, response.reason_phrase)
        try:
            return endpoint.reply.model_validate_json(response.content)
        except ValidationError as error:
            message = f"{self._where(endpoint)}: unexpected reply: {error}"
            raise PeerProtocolError(message) from error

    async def _send(
        self, endpoint: Endpoint[Reply], post: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                response = await post()
            except httpx.TransportError as error:
                if last or not (endpoint.idempotent or _never_sent(error)):
                    raise self._unreachable(endpoint, error) from error
                self._log_retry(endpoint, attempt, repr(error))
            else:
                if (
                    last
                    or not endpoint.idempotent
                    or response.status_code not in self.retry.statuses
                ):
                    return response
                self._log_retry(endpoint, attempt, f"HTTP {response.status_code}")
            await self._sleep(self.retry.delay(attempt - 1, self._rng))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _post(self, path: str, payload: object) -> httpx.Response:
        self.calls += 1
        return await self._http.post(path, json=payload)

    def _unreachable(self, endpoint: Endpoint[Reply], error: Exception) -> PeerUnreachableError:
        detail = str(error) or type(error).__name__
        return PeerUnreachableError(f"{self._where(endpoint)}: unreachable ({detail})")

    def _log_retry(self, endpoint: Endpoint[Reply], attempt: int, problem: str) -> None:
        log.info("%s: attempt %d failed (%s); retrying", self._where(endpoint), attempt, problem)

    def _where(self, endpoint: Endpoint[Reply]) -> str:
        """The URL of ``endpoint``: its path under our base URL, or its own absolute URL."""
        absolute = endpoint.path.startswith(("http://", "https://"))
        return endpoint.path if absolute else f"{self.base_url}{endpoint.path}"


def _never_sent(error: httpx.TransportError) -> bool:
    """The request cannot have reached the peer: repeating it is always safe."""
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS settings of every client (httpx's defaults), built once per process: building
    them (loading the CA bundle) took 17-37 ms, and a client is made for every task run."""
    return httpx.create_ssl_context()
