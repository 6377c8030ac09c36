"""Prove that a peer is reachable and accepts our credentials (``ping/logged``)."""

from __future__ import annotations

import httpx

from librarian_async.errors import PeerRefusedError, PeerUnreachableError


async def check_peer(
    url: str, port: int, authenticator: str, *, expected_name: str, timeout_seconds: float = 10.0
) -> None:
    """Raise unless the peer answers ``ping/logged`` with our credentials and its name."""
    user, _, password = authenticator.partition(":")
    endpoint = f"{url.rstrip('/')}:{port}/api/v2/ping/logged"
    try:
        async with httpx.AsyncClient(timeout=timeout_seconds) as client:
            response = await client.post(endpoint, json={}, auth=(user, password))
    except httpx.HTTPError as error:
        raise PeerUnreachableError(f"{endpoint}: unreachable ({error})") from error
    if response.status_code != 200:
        raise PeerRefusedError(response.status_code, response.text[:200], None)
    name = response.json().get("name")
    if name != expected_name:
        raise PeerRefusedError(200, f"{endpoint} calls itself {name!r}, not {expected_name!r}")
