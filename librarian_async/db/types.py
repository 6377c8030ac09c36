"""Column types shared by the models: aware UTC datetimes, integer enums, portable JSON."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# JSON on SQLite, JSONB on PostgreSQL. Never pickles (PITFALLS: data model).
PortableJSON = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that only ever holds aware UTC times.

    Naive datetimes are refused on the way in: a naive local time silently shifted the
    age windows of the system we replace. SQLite keeps no zone, so values are stored there
    as naive UTC and made aware again on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class IntEnumType(TypeDecorator[enum.IntEnum]):
    """Stores an IntEnum as its integer, the same encoding the wire protocol uses."""

    impl = Integer
    cache_ok = True

    def __init__(self, enum_class: type[enum.IntEnum], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enum_class = enum_class

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(self.enum_class(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> enum.IntEnum | None:
        return None if value is None else self.enum_class(value)
