"""Settings (environment variables ``LIBRARIAN_*``) and the background-task configuration.

Both report every problem at once as a :class:`~librarian_async.errors.ConfigError` whose
``problems`` are one printable line each.

* :mod:`.settings` — :class:`Settings` and :func:`load_settings`.
* :mod:`.tasks` — one strict model per task type, :data:`TASK_TYPES`.
* :mod:`.loading` — :func:`load_task_config`, :func:`parse_task_config`, :class:`TaskConfig`
  and :func:`check_references` (store and librarian names known only to the database).

Import from this package; the submodules are an implementation detail.
"""

from librarian_async.config.loading import (
    TaskConfig,
    check_references,
    load_task_config,
    parse_task_config,
    strip_trailing_commas,
)
from librarian_async.config.settings import ENV_PREFIX, Settings, load_settings
from librarian_async.config.tasks import (
    TASK_TYPE_ALIASES,
    TASK_TYPES,
    CheckConsumedQueueConfig,
    CheckIntegrityConfig,
    ConsumeQueueConfig,
    CorruptionFixerConfig,
    CreateLocalCloneConfig,
    DuplicateRemoteInstanceHypervisorConfig,
    IncomingTransferHypervisorConfig,
    OutgoingTransferHypervisorConfig,
    PerFileTaskEntry,
    ReceiveCloneConfig,
    RollingDeletionConfig,
    SendCloneConfig,
    TaskEntry,
)

__all__ = [
    "ENV_PREFIX",
    "TASK_TYPES",
    "TASK_TYPE_ALIASES",
    "CheckConsumedQueueConfig",
    "CheckIntegrityConfig",
    "ConsumeQueueConfig",
    "CorruptionFixerConfig",
    "CreateLocalCloneConfig",
    "DuplicateRemoteInstanceHypervisorConfig",
    "IncomingTransferHypervisorConfig",
    "OutgoingTransferHypervisorConfig",
    "PerFileTaskEntry",
    "ReceiveCloneConfig",
    "RollingDeletionConfig",
    "SendCloneConfig",
    "Settings",
    "TaskConfig",
    "TaskEntry",
    "check_references",
    "load_settings",
    "load_task_config",
    "parse_task_config",
    "strip_trailing_commas",
]
