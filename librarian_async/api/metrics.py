"""``GET /metrics``: Prometheus text exposition (format 0.0.4), rendered from the catalogue.

Every scrape reads a few grouped counts (one query each), so several processes sharing a
database report the same numbers and a restart loses nothing: task runs by outcome, the
duration of each entry's last run, transfers by status, send-queue depth per peer, corrupt
files, uncleared errors, plus this process's slow password checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from librarian_async.api.state import ApiState
from librarian_async.db import overview, runs
from librarian_async.db.models import TaskRun

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = Mapping[str, str]


@dataclass
class Metric:
    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Metric:
        self.samples.append((labels, value))
        return self


def render(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        lines += [f"{metric.name}{_labels(labels)} {value:g}" for labels, value in metric.samples]
    return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + pairs + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def collect(api: ApiState) -> list[Metric]:
    async with api.context.sessions() as session:
        run_counts = await overview.task_runs_by_outcome(session)
        last = await runs.last_runs(session)
        transfers = await overview.transfers_by_status(session)
        queue = await overview.queue_by_destination(session)
        corrupt = await overview.count_corrupt_files(session)
        errors = await overview.count_uncleared_errors(session)
    return [
        _task_runs(run_counts),
        _last_durations(last),
        _transfers(transfers),
        *_queue(queue),
        Metric("librarian_corrupt_files", "gauge", "Instances known to be corrupt.").add(corrupt),
        Metric("librarian_uncleared_errors", "gauge", "Errors not yet cleared.").add(errors),
        Metric(
            "librarian_api_password_checks_total",
            "counter",
            "Slow password hash checks done by this process (cache misses).",
        ).add(api.auth.cache.slow_checks),
    ]


def _task_runs(rows: Sequence[Mapping[str, Any]]) -> Metric:
    metric = Metric("librarian_task_runs_total", "counter", "Recorded task runs by outcome.")
    for row in rows:
        metric.add(
            float(row["count"]),
            task_type=str(row["task_type"]),
            task_name=str(row["task_name"]),
            outcome=str(row["outcome"]),
        )
    return metric


def _last_durations(last: Sequence[TaskRun]) -> Metric:
    metric = Metric(
        "librarian_task_last_duration_seconds", "gauge", "Duration of each entry's last run."
    )
    for run in last:
        if run.finished_at is not None:
            seconds = (run.finished_at - run.started_at).total_seconds()
            metric.add(seconds, task_name=run.task_name)
    return metric


def _transfers(rows: Sequence[Mapping[str, Any]]) -> Metric:
    metric = Metric("librarian_transfers", "gauge", "Transfers by direction and status.")
    for row in rows:
        metric.add(float(row["count"]), kind=str(row["kind"]), status=str(row["status"]))
    return metric


def _queue(rows: Sequence[Mapping[str, Any]]) -> list[Metric]:
    waiting = Metric("librarian_send_queue_waiting", "gauge", "Batches waiting for hand-off.")
    in_flight = Metric(
        "librarian_send_queue_in_flight", "gauge", "Batches handed off, not yet finished."
    )
    for row in rows:
        destination = str(row["destination"])
        waiting.add(float(row["waiting"]), destination=destination)
        in_flight.add(float(row["in_flight"]), destination=destination)
    return [waiting, in_flight]


def router(api: ApiState) -> APIRouter:
    routes = APIRouter(tags=["metrics"])

    @routes.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(render(await collect(api)), media_type=CONTENT_TYPE)

    return routes
