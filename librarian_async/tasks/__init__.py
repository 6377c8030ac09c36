"""Background task implementations and the registry the scheduler looks them up in.

Each task type is one module of this package, named after the type, exposing
``async def run(task, params) -> Report``. A type that the configuration accepts but this
version does not implement yet is absent from ``REGISTRY``; the runner refuses to start
with it rather than pretend to run it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import cast

from librarian_async.tasks.base import TaskFunction

IMPLEMENTED = (
    "check_integrity",
    "create_local_clone",
    "send_clone",
    "consume_queue",
    "check_consumed_queue",
    "receive_clone",
)


class TaskRegistry(Mapping[str, TaskFunction]):
    """Task type -> its run function. A task's module is imported when the type is first
    looked up, so a process imports only the tasks it is configured with (``run --once``
    of an integrity check starts without the network stack)."""

    def __init__(self, task_types: tuple[str, ...]) -> None:
        self._types = task_types

    def __getitem__(self, task_type: str) -> TaskFunction:
        if task_type not in self._types:
            raise KeyError(task_type)
        module = importlib.import_module(f"{__name__}.{task_type}")
        return cast(TaskFunction, module.run)

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._types

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)


REGISTRY = TaskRegistry(IMPLEMENTED)
