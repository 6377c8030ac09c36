"""Parse and format the durations used in task configuration (``every``, ``soft_timeout``).

Accepted forms (see :func:`parse_duration`):

* clock time ``HH:MM:SS`` or ``HH:MM``, hours may exceed 23 (``"48:00:00"`` is two days),
  seconds may be fractional (``"00:00:01.5"``);
* Python's ``str(timedelta)`` form: ``"1 day, 02:00:00"``, ``"3 days, 0:00:00"``;
* unit suffixes: ``"2d"``, ``"90m"``, ``"30s"``, ``"1h30m"``, ``"1w"`` (any case, spaces allowed);
* ISO 8601 durations with fixed-length parts: ``"PT1H"``, ``"P1DT2H"``, ``"P2W"``;
  years and months are rejected because their length varies;
* a number of seconds (``int`` or ``float``, not ``bool``).

A leading ``-`` negates any string form, so that a negative value is reported by the caller
as "must be greater than zero" rather than as unreadable.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_NUMBER = r"\d+(?:\.\d+)?"

_CLOCK = re.compile(
    r"(?:(?P<days>-?\d+)\s+days?,\s*)?"
    r"(?P<hours>\d+):(?P<minutes>\d{1,2})(?::(?P<seconds>\d{1,2}(?:\.\d+)?))?"
)
_UNITS = re.compile(
    rf"(?:(?P<weeks>{_NUMBER})\s*w\s*)?(?:(?P<days>{_NUMBER})\s*d\s*)?"
    rf"(?:(?P<hours>{_NUMBER})\s*h\s*)?(?:(?P<minutes>{_NUMBER})\s*m\s*)?"
    rf"(?:(?P<seconds>{_NUMBER})\s*s)?",
    re.IGNORECASE,
)
_ISO = re.compile(
    rf"P(?:(?P<years>{_NUMBER})Y)?(?:(?P<months>{_NUMBER})M)?(?:(?P<weeks>{_NUMBER})W)?"
    rf"(?:(?P<days>{_NUMBER})D)?"
    rf"(?:T(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?(?:(?P<seconds>{_NUMBER})S)?)?",
    re.IGNORECASE,
)

_MAX_SECONDS = timedelta.max.total_seconds()
_EXPECTED = (
    'expected HH:MM:SS, HH:MM, "1 day, 02:00:00", "2d", "1h30m", ISO 8601 such as "PT1H", '
    "or a number of seconds"
)


def parse_duration(value: object) -> timedelta:
    """Return ``value`` as a :class:`~datetime.timedelta`; raise ``ValueError`` if unreadable."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration {value!r}: {_EXPECTED}")
    if isinstance(value, int | float):
        return _from_seconds(value)
    text, sign = value.strip(), 1
    if text.startswith("-") and not _CLOCK.fullmatch(text):  # "-1 day, 23:00:00" has its own
        text, sign = text[1:].strip(), -1
    try:
        return sign * _parse_text(text, value)
    except OverflowError:
        raise ValueError(f"invalid duration {value!r}: too large") from None


def _from_seconds(seconds: float) -> timedelta:
    if not math.isfinite(seconds) or abs(seconds) > _MAX_SECONDS:
        raise ValueError(f"invalid duration {seconds!r}: not a usable number of seconds")
    return timedelta(seconds=seconds)


def _parse_text(text: str, original: str) -> timedelta:
    for parse in (_parse_clock, _parse_iso, _parse_units):
        result = parse(text)
        if result is not None:
            return result
    raise ValueError(f"invalid duration {original!r}: {_EXPECTED}")


def _parse_clock(text: str) -> timedelta | None:
    match = _CLOCK.fullmatch(text)
    if match is None:
        return None
    minutes, seconds = int(match["minutes"]), float(match["seconds"] or 0)
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"invalid duration {text!r}: minutes and seconds must be below 60")
    days = int(match["days"] or 0)
    return timedelta(days=days, hours=int(match["hours"]), minutes=minutes, seconds=seconds)


def _parse_iso(text: str) -> timedelta | None:
    match = _ISO.fullmatch(text)
    if match is None or text.upper().endswith(("P", "T")):
        return None
    if match["years"] or match["months"]:
        raise ValueError(
            f"invalid duration {text!r}: years and months have no fixed length; "
            "use weeks (W) or days (D)"
        )
    return _from_parts(match)


def _parse_units(text: str) -> timedelta | None:
    match = _UNITS.fullmatch(text)
    if match is None or not any(match.groupdict().values()):
        return None
    return _from_parts(match)


def _from_parts(match: re.Match[str]) -> timedelta:
    parts = {key: float(value) for key, value in match.groupdict().items() if value}
    return timedelta(
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )


def format_duration(duration: timedelta) -> str:
    """Return a short human form such as ``"1d 2h 30m"``, ``"45s"``, ``"1.5s"`` or ``"0s"``."""
    if duration < timedelta(0):
        return "-" + format_duration(-duration)
    whole_seconds = duration.days * 86400 + duration.seconds
    days, rest = divmod(whole_seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if duration.microseconds:
        parts.append(f"{seconds + duration.microseconds / 1e6:g}s")
    elif seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts)
