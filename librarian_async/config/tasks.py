"""One pydantic model per task type: the keys an entry of the task configuration takes.

Models are strict (a string where a number belongs is an error, a bool is not an int) and
forbid unknown keys. Each model names its task type in the class variable ``task_type``;
:data:`TASK_TYPES` maps every type to its model.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import partial
from typing import Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from librarian_async.durations import format_duration, parse_duration
from librarian_async.enums import DeletionPolicy, parse_enum


def _positive(duration: timedelta) -> timedelta:
    if duration <= timedelta(0):
        raise ValueError(f"must be greater than zero (got {format_duration(duration)})")
    return duration


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _cpu_count() -> int:
    return os.cpu_count() or 1


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Count = Annotated[int, Field(ge=1)]
Days = Annotated[int, Field(ge=0)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
StoreList = Annotated[list[Name], BeforeValidator(_as_list), Field(min_length=1)]
DeletionPolicyName = Annotated[DeletionPolicy, BeforeValidator(partial(parse_enum, DeletionPolicy))]


class TaskEntry(BaseModel):
    """Keys every task type takes. ``task_name`` and ``every`` are required.

    ``every`` is the time between the starts of two runs; ``soft_timeout`` is the budget of
    one run (None: no limit). Both accept any form of :func:`parse_duration`.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    task_type: ClassVar[str]

    task_name: Name
    every: PositiveDuration
    soft_timeout: PositiveDuration | None = None


class PerFileTaskEntry(TaskEntry):
    """A task doing I/O per file; ``concurrency`` files at a time (default: CPU count)."""

    concurrency: Count = Field(default_factory=_cpu_count)


class CheckIntegrityConfig(PerFileTaskEntry):
    """Re-hash recent instances on a store. Requires ``store_name`` and ``age_in_days``."""

    task_type: ClassVar[str] = "check_integrity"
    store_name: Name
    age_in_days: Days


class CreateLocalCloneConfig(PerFileTaskEntry):
    """Copy recent files to another local store.

    Requires ``age_in_days``, ``clone_from`` and ``clone_to`` (a store name or a list; one
    copy is made across all of them). ``concurrency`` defaults to twice the CPU count: a
    copy spends much of its time waiting for its fsync, not on a CPU.
    """

    task_type: ClassVar[str] = "create_local_clone"
    age_in_days: Days
    clone_from: Name
    clone_to: StoreList
    files_per_run: Count = 1024
    disable_store_on_full: bool = False
    concurrency: Count = Field(default_factory=lambda: 2 * _cpu_count())


class SendCloneConfig(PerFileTaskEntry):
    """Stage recent files on a peer and queue them. Requires ``destination_librarian`` and
    ``age_in_days``; ``warn_disabled_timer`` is in days."""

    task_type: ClassVar[str] = "send_clone"
    destination_librarian: Name
    age_in_days: Days
    store_preference: Name | None = None
    send_batch_size: Count = 128
    warn_disabled_timer: float = Field(1.0, ge=0)

    @property
    def warn_disabled_interval(self) -> timedelta:
        """``warn_disabled_timer`` as a timedelta."""
        return timedelta(days=self.warn_disabled_timer)


class ReceiveCloneConfig(PerFileTaskEntry):
    """Ingest staged incoming files; ``deletion_policy`` is given to the new instances."""

    task_type: ClassVar[str] = "receive_clone"
    deletion_policy: DeletionPolicyName = DeletionPolicy.DISALLOWED
    files_per_run: Count = 1024


class ConsumeQueueConfig(TaskEntry):
    """Hand queued outgoing batches to their transfer method."""

    task_type: ClassVar[str] = "consume_queue"


class CheckConsumedQueueConfig(TaskEntry):
    """Follow handed-off batches until their transfer ends."""

    task_type: ClassVar[str] = "check_consumed_queue"


class OutgoingTransferHypervisorConfig(TaskEntry):
    """Reconcile outgoing transfers older than ``age_in_days`` (required) with the peer."""

    task_type: ClassVar[str] = "outgoing_transfer_hypervisor"
    age_in_days: Days


class IncomingTransferHypervisorConfig(TaskEntry):
    """Reconcile incoming transfers older than ``age_in_days`` (required) with the peer."""

    task_type: ClassVar[str] = "incoming_transfer_hypervisor"
    age_in_days: Days


class DuplicateRemoteInstanceHypervisorConfig(TaskEntry):
    """Remove duplicate remote-instance rows left by older schemas."""

    task_type: ClassVar[str] = "duplicate_remote_instance_hypervisor"


class RollingDeletionConfig(PerFileTaskEntry):
    """Delete local copies held safely elsewhere. Requires ``store_name`` and
    ``age_in_days`` (may be fractional)."""

    task_type: ClassVar[str] = "rolling_deletion"
    store_name: Name
    age_in_days: float = Field(ge=0)
    number_of_remote_copies: Count = 3
    verify_downstream_checksums: bool = True
    mark_unavailable: bool = True
    force_deletion: bool = False


class CorruptionFixerConfig(TaskEntry):
    """Ask upstream librarians to resend corrupt files."""

    task_type: ClassVar[str] = "corruption_fixer"


TASK_TYPES: dict[str, type[TaskEntry]] = {
    model.task_type: model
    for model in (
        CheckIntegrityConfig,
        CreateLocalCloneConfig,
        SendCloneConfig,
        ReceiveCloneConfig,
        ConsumeQueueConfig,
        CheckConsumedQueueConfig,
        OutgoingTransferHypervisorConfig,
        IncomingTransferHypervisorConfig,
        DuplicateRemoteInstanceHypervisorConfig,
        RollingDeletionConfig,
        CorruptionFixerConfig,
    )
}
"""Every task type by its configuration key."""

TASK_TYPE_ALIASES = {"recieve_clone": "receive_clone"}
"""Other accepted spellings of task types (the seed document's misspelling)."""
