"""What a task receives and returns.

A task is ``async def run(task: TaskContext, params) -> Report``. It reads and writes the
catalogue through ``task.app``, checks ``task.budget.spent()`` between items (the soft
timeout), and records its counts and problems in ``task.report`` as it goes, so that a
run cut short by cancellation still reports what it did.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from librarian_async.context import Context


class Budget:
    """The soft-timeout budget of one run; ``None`` means unlimited."""

    def __init__(
        self, soft_timeout: timedelta | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._deadline = None if soft_timeout is None else clock() + soft_timeout.total_seconds()

    def spent(self) -> bool:
        """True once the run must not start another item."""
        return self._deadline is not None and self._clock() >= self._deadline

    def remaining(self) -> float | None:
        """Seconds left, or None when unlimited."""
        return None if self._deadline is None else max(0.0, self._deadline - self._clock())


@dataclass
class Report:
    """Counts and problems of one run; problems make ``run --once`` exit 1."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, key: str, amount: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + amount

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def summary(self) -> str:
        """``checked=3 ok=2 corrupt=1`` style, for log lines and the CLI."""
        return " ".join(f"{key}={value}" for key, value in self.counts.items()) or "nothing to do"


@dataclass
class TaskContext:
    """Per-run view given to a task: the shared context, its budget and its report."""

    app: Context
    task_name: str
    budget: Budget
    report: Report = field(default_factory=Report)


TaskFunction = Callable[[TaskContext, Any], Awaitable[Report]]
