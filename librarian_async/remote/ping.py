"""Prove that a peer is reachable and accepts our credentials (``ping/logged``)."""

from __future__ import annotations

import httpx

from librarian_async.errors import PeerRefusedError
from librarian_async.remote.client import PeerClient, RetryPolicy


async def check_peer(
    url: str,
    port: int,
    authenticator: str,
    *,
    expected_name: str,
    timeout_seconds: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Raise unless the peer answers ``ping/logged`` with our credentials and its name.

    One attempt only: an operator adding a peer wants the answer now, not after retries.
    """
    user, _, password = authenticator.partition(":")
    async with PeerClient(
        url,
        port,
        user,
        password,
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds,
        retry=RetryPolicy(attempts=1),
        transport=transport,
    ) as peer:
        reply = await peer.ping_logged()
    if reply.name != expected_name:
        raise PeerRefusedError(
            200, f"{peer.base_url} calls itself {reply.name!r}, not {expected_name!r}"
        )
