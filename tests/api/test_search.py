"""``search/file``: filters, the bound on results, copies here and elsewhere, 404 when empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from librarian_async.context import Context
from librarian_async.db import catalog
from librarian_async.db.models import File, RemoteInstance, Store
from librarian_async.enums import DeletionPolicy

from .helpers import add_librarian, post

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def catalogue(app: Context, store: Store, name: str, hours: int, uploader: str = "u") -> None:
    file = File(
        name=name,
        create_time=T0 + timedelta(hours=hours),
        size=4,
        checksum="md5:::" + "0" * 32,
        uploader=uploader,
        source="site-a",
    )
    async with app.sessions.begin() as session:
        await catalog.add_file_with_instance(
            session,
            file,
            store=store,
            path=f"{store.store_path}/{name}",
            deletion_policy=DeletionPolicy.ALLOWED,
            created_time=T0,
        )


async def test_nothing_found_is_404(client: httpx.AsyncClient) -> None:
    response = await post(client, "search/file", {"name": "nope"}, "reader")
    assert response.status_code == 404
    assert response.json() == {"reason": "No files found.", "suggested_remedy": "Widen the search."}


async def test_a_file_with_its_instances_and_remote_copies(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    await catalogue(app, store, "obs/a.uvh5", 0)
    peer = await add_librarian(app, "site-b")
    async with app.sessions.begin() as session:
        session.add(
            RemoteInstance(
                file_name="obs/a.uvh5", librarian_id=peer.id, store_id=3, copy_time=T0, sender="x"
            )
        )
    response = await post(client, "search/file", {"name": "obs/a.uvh5"}, "reader")
    assert response.status_code == 200
    [found] = response.json()
    assert found == {
        "name": "obs/a.uvh5",
        "create_time": "2024-05-01T12:00:00Z",
        "size": 4,
        "checksum": "md5:::" + "0" * 32,
        "uploader": "u",
        "source": "site-a",
        "instances": [
            {
                "path": f"{store.store_path}/obs/a.uvh5",
                "store_id": store.id,
                "deletion_policy": 1,
                "created_time": "2024-05-01T12:00:00Z",
                "available": True,
            }
        ],
        "remote_instances": [{"librarian_name": "site-b", "copy_time": "2024-05-01T12:00:00Z"}],
    }


async def test_filters_and_max_results(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    for hour in range(6):
        await catalogue(app, store, f"f{hour}", hour, uploader="even" if hour % 2 == 0 else "odd")

    async def names(body: dict[str, object]) -> list[str]:
        response = await post(client, "search/file", body, "reader")
        return [] if response.status_code == 404 else [f["name"] for f in response.json()]

    assert await names({}) == ["f5", "f4", "f3", "f2", "f1", "f0"]
    assert await names({"max_results": 2}) == ["f5", "f4"]
    assert await names({"uploader": "even"}) == ["f4", "f2", "f0"]
    assert await names({"source": "elsewhere"}) == []
    window = [(T0 + timedelta(hours=1)).isoformat(), (T0 + timedelta(hours=3)).isoformat()]
    assert await names({"create_time_window": window}) == ["f3", "f2", "f1"]
    naive = ["2024-05-01T13:00:00", "2024-05-01T14:00:00"]
    assert await names({"create_time_window": naive}) == ["f2", "f1"]


async def test_max_results_must_be_positive(client: httpx.AsyncClient) -> None:
    response = await post(client, "search/file", {"max_results": 0}, "reader")
    assert response.status_code == 400
    assert "max_results" in response.json()["reason"]
