"""Times are aware UTC on both backends; a naive time is refused, never shifted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError

from librarian_async.context import Context
from librarian_async.db.models import File


def a_file(name: str, create_time: datetime) -> File:
    return File(
        name=name,
        create_time=create_time,
        size=1,
        checksum="md5:::" + "0" * 32,
        uploader="u",
        source="s",
    )


async def test_times_come_back_aware_utc_and_equal(app: Context) -> None:
    local = datetime(2026, 11, 28, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    async with app.sessions.begin() as session:
        session.add(a_file("a", local))
    async with app.sessions() as session:
        stored = await session.get_one(File, "a")
    assert stored.create_time.tzinfo is not None
    assert stored.create_time.utcoffset() == timedelta(0)
    assert stored.create_time == local
    assert stored.create_time == datetime(2026, 11, 29, 4, 30, tzinfo=UTC)


async def test_a_naive_time_is_refused(app: Context) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with app.sessions.begin() as session:
            session.add(a_file("b", datetime(2026, 11, 28, 12, 0)))
