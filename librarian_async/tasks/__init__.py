"""Background task implementations and the registry the scheduler looks them up in.

Each task type is one module exposing ``async def run(task, params) -> Report``.
A type that the configuration accepts but this version does not implement yet is absent
from ``REGISTRY``; the runner refuses to start with it rather than pretend to run it.
"""

from __future__ import annotations

from librarian_async.tasks import (
    check_consumed_queue,
    check_integrity,
    consume_queue,
    create_local_clone,
    receive_clone,
    send_clone,
)
from librarian_async.tasks.base import TaskFunction

REGISTRY: dict[str, TaskFunction] = {
    "check_integrity": check_integrity.run,
    "create_local_clone": create_local_clone.run,
    "send_clone": send_clone.run,
    "consume_queue": consume_queue.run,
    "check_consumed_queue": check_consumed_queue.run,
    "receive_clone": receive_clone.run,
}
