"""``/metrics`` and the protocol router mounted in a host app of someone else's."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from librarian_async.api import protocol_router
from librarian_async.context import Context
from librarian_async.db.models import TaskRun

from .helpers import add_users, post


async def test_metrics_in_prometheus_text_format(client: httpx.AsyncClient, app: Context) -> None:
    started = app.now() - timedelta(seconds=10)
    async with app.sessions.begin() as session:
        for outcome in ("ok", "ok", "problems"):
            session.add(
                TaskRun(
                    task_type="check_integrity",
                    task_name='check "main"',
                    started_at=started,
                    finished_at=started + timedelta(seconds=2.5),
                    outcome=outcome,
                )
            )
    await post(client, "ping/logged", {}, "reader")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    labels = 'task_type="check_integrity",task_name="check \\"main\\""'
    assert f'librarian_task_runs_total{{{labels},outcome="ok"}} 2' in lines
    assert f'librarian_task_runs_total{{{labels},outcome="problems"}} 1' in lines
    assert "# TYPE librarian_task_runs_total counter" in lines
    assert "librarian_corrupt_files 0" in lines
    assert "# TYPE librarian_send_queue_waiting gauge" in lines
    assert "librarian_api_password_checks_total 1" in lines
    assert 'librarian_task_last_duration_seconds{task_name="check \\"main\\""} 2.5' in lines


async def test_mounted_router_keeps_the_protocol_error_bodies(app: Context) -> None:
    await add_users(app)
    host = FastAPI()
    host.include_router(protocol_router(app))
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
        assert (await post(client, "ping/logged", {}, "reader")).status_code == 200
        refused = await post(client, "ping/logged", {})
        assert refused.status_code == 401
        assert set(refused.json()) == {"reason", "suggested_remedy"}
        invalid = await post(client, "checkin/status", {"source_transfer_ids": "x"}, "callback")
        assert invalid.status_code == 400
        assert "source_transfer_ids" in invalid.json()["reason"]
        empty = await post(client, "search/file", {}, "reader")
        assert empty.status_code == 404
        assert empty.json()["reason"] == "No files found."
