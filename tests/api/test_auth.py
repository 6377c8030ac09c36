"""Authentication levels, the credential cache and the shape of every error body."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from librarian_async.api import create_app
from librarian_async.context import Context
from librarian_async.db.models import User

from .helpers import Disk, add_users, auth, hash_of, post

ERROR_KEYS = {"reason", "suggested_remedy"}


async def test_ping_needs_no_credentials(client: httpx.AsyncClient, app: Context) -> None:
    response = await post(client, "ping/", {})
    assert response.status_code == 200
    assert response.json() == {
        "name": app.settings.name,
        "description": response.json()["description"],
    }
    assert response.json()["description"].startswith("librarian_async")


async def test_ping_logged_answers_a_known_user(client: httpx.AsyncClient, app: Context) -> None:
    response = await post(client, "ping/logged", {}, "reader")
    assert response.status_code == 200
    assert response.json()["name"] == "test-librarian"


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        (None, "needs HTTP Basic credentials"),
        (("reader", "wrong"), "Unknown user or wrong password"),
        (("stranger", "pw-stranger"), "Unknown user or wrong password"),
        (auth("nobody"), "has level NONE; this endpoint needs READONLY"),
    ],
)
async def test_ping_logged_refuses(
    client: httpx.AsyncClient, credentials: tuple[str, str] | None, reason: str
) -> None:
    response = await client.post("/api/v2/ping/logged", json={}, auth=credentials)
    assert response.status_code == 401
    assert set(response.json()) == ERROR_KEYS
    assert reason in response.json()["reason"]
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("user", "path", "allowed"),
    [
        ("reader", "clone/batch_stage", False),
        ("callback", "clone/batch_stage", False),
        ("reader", "checkin/status", False),
        ("callback", "checkin/status", True),
        ("peer-a", "checkin/status", True),
        ("admin", "checkin/status", True),
        ("nobody", "search/file", False),
        ("reader", "search/file", True),
    ],
)
async def test_levels_are_ordered(
    client: httpx.AsyncClient, user: str, path: str, allowed: bool
) -> None:
    response = await post(client, path, {}, user)
    assert (response.status_code != 401) is allowed, response.json()


async def test_a_second_request_does_not_hash_again(
    client: httpx.AsyncClient, web: FastAPI
) -> None:
    cache = web.state.api.auth.cache
    assert (await post(client, "ping/logged", {}, "reader")).status_code == 200
    assert cache.slow_checks == 1
    for _ in range(3):
        assert (await post(client, "ping/logged", {}, "reader")).status_code == 200
    assert cache.slow_checks == 1
    assert (await post(client, "ping/logged", {}, "callback")).status_code == 200
    assert cache.slow_checks == 2


async def test_a_wrong_password_is_never_taken_from_the_cache(
    client: httpx.AsyncClient, web: FastAPI
) -> None:
    assert (await post(client, "ping/logged", {}, "reader")).status_code == 200
    for _ in range(2):
        response = await client.post("/api/v2/ping/logged", json={}, auth=("reader", "nope"))
        assert response.status_code == 401
    assert web.state.api.auth.cache.slow_checks == 3


async def test_cached_checks_expire_and_follow_password_changes(app: Context, disk: Disk) -> None:
    now = [1000.0]
    timed = dataclasses.replace(app, monotonic=lambda: now[0])
    await add_users(app)
    web = create_app(timed, open_store=disk.open_store, credential_ttl=60)
    cache = web.state.api.auth.cache
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        await post(client, "ping/logged", {}, "reader")
        now[0] += 59
        await post(client, "ping/logged", {}, "reader")
        assert cache.slow_checks == 1
        now[0] += 2
        await post(client, "ping/logged", {}, "reader")
        assert cache.slow_checks == 2
        async with app.sessions.begin() as session:
            new_hash = hash_of("changed")
            await session.execute(
                update(User).where(User.username == "reader").values(password_hash=new_hash)
            )
        assert (await post(client, "ping/logged", {}, "reader")).status_code == 401


async def test_invalid_json_is_400_with_a_reason(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v2/checkin/status",
        content=b"{not json",
        headers={"content-type": "application/json"},
        auth=auth("callback"),
    )
    assert response.status_code == 400
    assert set(response.json()) == ERROR_KEYS
    assert "not valid JSON" in response.json()["reason"]


async def test_a_missing_field_is_400_naming_it(client: httpx.AsyncClient) -> None:
    response = await post(client, "clone/batch_stage", {"source": "peer-a"}, "peer-a")
    assert response.status_code == 400
    assert set(response.json()) == ERROR_KEYS
    assert "uploads: Field required" in response.json()["reason"]
    assert "total_size: Field required" in response.json()["reason"]


async def test_a_wrong_type_is_400_naming_the_nested_field(client: httpx.AsyncClient) -> None:
    body = {"source_transfer_ids": [1, "x"], "destination_transfer_ids": []}
    response = await post(client, "checkin/status", body, "callback")
    assert response.status_code == 400
    assert "source_transfer_ids.1:" in response.json()["reason"]


async def test_unknown_paths_and_methods_get_the_error_body(client: httpx.AsyncClient) -> None:
    missing = await post(client, "no/such/endpoint", {}, "admin")
    assert missing.status_code == 404
    assert set(missing.json()) == ERROR_KEYS
    wrong_method = await client.get("/api/v2/ping/logged")
    assert wrong_method.status_code == 405
    assert set(wrong_method.json()) == ERROR_KEYS


async def test_a_garbled_authorization_header_is_401_with_the_body(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v2/ping/logged", json={}, headers={"Authorization": "Basic %%%"}
    )
    assert response.status_code == 401
    assert set(response.json()) == ERROR_KEYS
