"""Timeouts, retries and backoff against real sockets: a closed port, and a tiny Starlette app
served by uvicorn that fails on purpose. No mocks of our own code."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from librarian_async.enums import TransferStatus
from librarian_async.errors import PeerRefusedError, PeerUnreachableError
from librarian_async.remote import schemas as wire
from librarian_async.remote.client import ENDPOINTS, PeerClient, RetryPolicy
from librarian_async.remote.errors import PeerProtocolError

from .serving import closed_port, served

PING = {"name": "flaky", "description": "fails on purpose"}
PAIR = wire.StagedRequest(source_transfer_id=1, destination_transfer_id=2)


def flaky_app(hits: Counter[str]) -> Starlette:
    """Each endpoint misbehaves in its own way; ``hits`` counts requests per path."""

    async def unavailable_twice(request: Request) -> Response:
        hits[request.url.path] += 1
        if hits[request.url.path] <= 2:
            return JSONResponse({"detail": "warming up"}, status_code=503)
        return JSONResponse(PING)

    async def always_unavailable(request: Request) -> Response:
        hits[request.url.path] += 1
        return JSONResponse({"reason": "down", "suggested_remedy": "wait"}, status_code=503)

    async def unauthorised(request: Request) -> Response:
        hits[request.url.path] += 1
        return JSONResponse({"detail": "Not authenticated"}, status_code=401)

    async def slow(request: Request) -> Response:
        hits[request.url.path] += 1
        await asyncio.sleep(1.0)
        return JSONResponse(PING)

    async def garbled(request: Request) -> Response:
        hits[request.url.path] += 1
        return JSONResponse({"nom": "x"})

    return Starlette(
        routes=[
            Route("/api/v2/ping/logged", unavailable_twice, methods=["POST"]),
            Route("/api/v2/clone/staged", always_unavailable, methods=["POST"]),
            Route("/api/v2/checkin/status", unauthorised, methods=["POST"]),
            Route("/api/v2/ping/", slow, methods=["POST"]),
            Route("/api/v2/clone/ongoing", slow, methods=["POST"]),
            Route("/api/v2/search/file", garbled, methods=["POST"]),
        ]
    )


class Sleeps:
    """Records the backoff delays (and does not wait them out)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def client_for(port: int, sleeps: Sleeps, *, read_timeout: float = 5.0) -> PeerClient:
    return PeerClient(
        "http://127.0.0.1",
        port,
        "u",
        "p",
        connect_timeout=0.5,
        read_timeout=read_timeout,
        retry=RetryPolicy(attempts=4, base_delay=0.2, max_delay=5.0),
        sleep=sleeps,
        rng=random.Random(7),
    )


def test_the_documented_idempotent_endpoints() -> None:
    assert {e.path for e in ENDPOINTS if e.idempotent} == {
        "ping/",
        "ping/logged",
        "search/file",
        "validate/file",
        "corrupt/prepare",
        "checkin/status",
        "checkin/update",
        "clone/complete",
        "clone/fail",
    }


async def test_503_twice_then_200_is_retried_with_growing_jittered_delays() -> None:
    hits: Counter[str] = Counter()
    sleeps = Sleeps()
    async with served(flaky_app(hits)) as port, client_for(port, sleeps) as peer:
        reply = await peer.ping_logged()
    assert reply == wire.PingResponse(**PING)
    assert hits["/api/v2/ping/logged"] == 3 and peer.calls == 3
    first, second = sleeps.delays
    assert 0.1 <= first <= 0.2 < second <= 0.4


async def test_a_non_idempotent_call_is_not_retried_on_503() -> None:
    hits: Counter[str] = Counter()
    sleeps = Sleeps()
    async with served(flaky_app(hits)) as port, client_for(port, sleeps) as peer:
        with pytest.raises(PeerRefusedError) as refused:
            await peer.clone_staged(PAIR)
    assert (refused.value.status, refused.value.reason) == (503, "down")
    assert hits["/api/v2/clone/staged"] == 1 and sleeps.delays == []


async def test_a_refusal_is_never_retried() -> None:
    hits: Counter[str] = Counter()
    sleeps = Sleeps()
    async with served(flaky_app(hits)) as port, client_for(port, sleeps) as peer:
        with pytest.raises(PeerRefusedError) as refused:
            await peer.checkin_status(wire.CheckinStatusRequest())
    assert refused.value.status == 401 and refused.value.reason == "Not authenticated"
    assert hits["/api/v2/checkin/status"] == 1 and peer.calls == 1


async def test_a_read_timeout_is_unreachable_and_retried_only_when_idempotent() -> None:
    hits: Counter[str] = Counter()
    sleeps = Sleeps()
    async with served(flaky_app(hits)) as port:
        async with client_for(port, sleeps, read_timeout=0.2) as peer:
            with pytest.raises(PeerUnreachableError, match="unreachable"):
                await peer.ping()
        assert hits["/api/v2/ping/"] == 4
        async with client_for(port, sleeps, read_timeout=0.2) as peer:
            with pytest.raises(PeerUnreachableError):
                await peer.clone_ongoing(wire.OngoingRequest(**PAIR.model_dump()))
        assert hits["/api/v2/clone/ongoing"] == 1


async def test_a_reply_that_breaks_the_protocol() -> None:
    hits: Counter[str] = Counter()
    async with served(flaky_app(hits)) as port, client_for(port, Sleeps()) as peer:
        with pytest.raises(PeerProtocolError, match="unexpected reply"):
            await peer.search_file(wire.SearchFileRequest())


async def test_a_closed_port_is_unreachable_quickly_after_backing_off() -> None:
    sleeps = Sleeps()
    started = time.monotonic()
    async with client_for(closed_port(), sleeps) as peer:
        with pytest.raises(PeerUnreachableError, match="unreachable"):
            await peer.checkin_update(wire.CheckinUpdateRequest(new_status=TransferStatus.ONGOING))
        assert peer.calls == 4
        # Never sent, so even a call that is not idempotent may be tried again.
        with pytest.raises(PeerUnreachableError):
            await peer.batch_stage(wire.BatchStageRequest(uploads=[], source="a", total_size=0))
        assert peer.calls == 8
    assert len(sleeps.delays) == 6
    assert time.monotonic() - started < 5


async def test_real_backoff_waits() -> None:
    peer = PeerClient(
        "http://127.0.0.1",
        closed_port(),
        "u",
        "p",
        connect_timeout=0.5,
        retry=RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.1),
    )
    started = time.monotonic()
    async with peer:
        with pytest.raises(PeerUnreachableError):
            await peer.ping()
    assert 0.05 <= time.monotonic() - started < 3
