"""The transfer methods a sender knows, and the choice among those a receiver offers.

:data:`ACCEPTED_PROVIDERS` is our order of preference, sent as ``accepts_providers`` with
``clone/batch_stage`` and ``clone/stage`` (PROTOCOL §4); the receiver then advertises the
methods it offers among them, in that order. :func:`choose_method` takes the first
advertised method that we know and that really works from here: an unknown method
(``globus``) or one whose check fails is skipped, never assumed to work.
"""

from __future__ import annotations

from collections.abc import Mapping

from librarian_async.transfer.base import Fields, FileMove, TransferMethod
from librarian_async.transfer.http import HttpMethod
from librarian_async.transfer.local import LocalMethod
from librarian_async.transfer.rsync import RsyncMethod

__all__ = [
    "ACCEPTED_PROVIDERS",
    "METHODS",
    "Fields",
    "FileMove",
    "TransferMethod",
    "choose_method",
]

METHODS: dict[str, TransferMethod] = {
    method.name: method for method in (HttpMethod(), LocalMethod(), RsyncMethod())
}
ACCEPTED_PROVIDERS = ("http", "local", "rsync")


def choose_method(providers: Mapping[str, Fields]) -> tuple[TransferMethod, Fields] | None:
    """The first advertised method (in the mapping's order) that we know and that is valid
    with its fields, with those fields; None when no advertised method can work."""
    for name, fields in providers.items():
        method = METHODS.get(name)
        if method is not None and isinstance(fields, Mapping) and method.valid(fields) is True:
            return method, fields
    return None
