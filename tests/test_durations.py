"""Durations as operators write them in ``every`` and ``soft_timeout``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from librarian_async.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01:00:00", timedelta(hours=1)),
        ("00:30:00", timedelta(minutes=30)),
        ("01:30", timedelta(hours=1, minutes=30)),
        ("23:59:59", timedelta(hours=23, minutes=59, seconds=59)),
        # A deployed system once collapsed a day or more to zero seconds.
        ("24:00:00", timedelta(days=1)),
        ("48:00:00", timedelta(days=2)),
        ("36:30:00", timedelta(days=1, hours=12, minutes=30)),
        ("00:00:01.5", timedelta(seconds=1.5)),
        ("1 day, 02:00:00", timedelta(days=1, hours=2)),
        ("3 days, 0:00:00", timedelta(days=3)),
        ("2 days, 3:04:05", timedelta(days=2, hours=3, minutes=4, seconds=5)),
        ("-1 day, 23:00:00", -timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("90m", timedelta(minutes=90)),
        ("30s", timedelta(seconds=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1H 30M", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("1w", timedelta(weeks=1)),
        ("PT1H", timedelta(hours=1)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT1H30M15.5S", timedelta(hours=1, minutes=30, seconds=15.5)),
        ("P2W", timedelta(weeks=2)),
        ("pt45m", timedelta(minutes=45)),
        ("  01:00:00  ", timedelta(hours=1)),
    ],
)
def test_accepted_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3600, timedelta(hours=1)), (1.5, timedelta(seconds=1.5)), (0, timedelta(0))],
)
def test_numbers_are_seconds(value: float, expected: timedelta) -> None:
    assert parse_duration(value) == expected


def test_a_timedelta_passes_through() -> None:
    assert parse_duration(timedelta(minutes=3)) == timedelta(minutes=3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-00:10:00", -timedelta(minutes=10)),
        ("-5s", -timedelta(seconds=5)),
        (-30, -timedelta(seconds=30)),
    ],
)
def test_negative_durations_parse_so_callers_can_reject_them(
    text: str | int, expected: timedelta
) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("P1Y", "no fixed length"),
        ("P2M", "no fixed length"),
        ("P", "invalid duration"),
        ("PT", "invalid duration"),
        ("P1DT", "invalid duration"),
        ("", "invalid duration"),
        ("soon", "invalid duration"),
        ("1 fortnight", "invalid duration"),
        ("--5s", "invalid duration"),
        ("00:60:00", "below 60"),
        ("00:00:75", "below 60"),
        ("1:2:3:4", "invalid duration"),
        ("99999999999d", "too large"),
        (True, "invalid duration"),
        (None, "invalid duration"),
        ([60], "invalid duration"),
        (float("nan"), "not a usable number"),
        (float("inf"), "not a usable number"),
    ],
)
def test_rejected_values_raise_value_error(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(hours=1, minutes=30), "1h 30m"),
        (timedelta(days=2), "2d"),
        (timedelta(days=1, hours=2, seconds=3), "1d 2h 3s"),
        (-timedelta(minutes=10), "-10m"),
    ],
)
def test_format_duration(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


@pytest.mark.parametrize(
    "duration",
    [
        timedelta(days=3, hours=4, minutes=5, seconds=6),
        timedelta(seconds=0.25),
        -timedelta(hours=2),
    ],
)
def test_formatted_durations_parse_back(duration: timedelta) -> None:
    assert parse_duration(format_duration(duration)) == duration
