"""Enumerations shared by the database, the wire protocol and the task configuration.

The integer values are those of the Librarian v2 protocol and must not change. Users may
write a member by name in any case (``"disallowed"``) or by its integer value (``0``); use
:func:`parse_enum` to read such input.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

__all__ = ["AuthLevel", "DeletionPolicy", "TransferStatus", "parse_enum"]


class DeletionPolicy(IntEnum):
    """Whether an instance (a physical copy) may be deleted."""

    DISALLOWED = 0
    ALLOWED = 1


class TransferStatus(IntEnum):
    """The life cycle of an incoming, outgoing or clone transfer."""

    INITIATED = 0
    ONGOING = 1
    STAGED = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5


class AuthLevel(IntEnum):
    """What a user (or a peer librarian) may do through the API."""

    NONE = 0
    READONLY = 1
    CALLBACK = 2
    READAPPEND = 3
    READWRITE = 4
    ADMIN = 100


E = TypeVar("E", bound=IntEnum)


def parse_enum(enum_type: type[E], value: object) -> E:
    """Return the member of ``enum_type`` named by ``value``.

    ``value`` may be a member, a name in any case (surrounding spaces ignored), an ``int``
    value (not a ``bool``) or a string of digits. Anything else raises ``ValueError`` listing
    the accepted names and values.
    """
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str) and value.strip().upper() in enum_type.__members__:
        return enum_type.__members__[value.strip().upper()]
    number = int(value) if isinstance(value, str) and value.strip().isdecimal() else value
    if isinstance(number, int) and not isinstance(number, bool):
        try:
            return enum_type(number)
        except ValueError:
            pass
    choices = ", ".join(f"{member.name} ({member.value})" for member in enum_type)
    raise ValueError(f"{value!r} is not a valid {enum_type.__name__}; expected {choices}")
