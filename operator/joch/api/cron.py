"""Five-field cron expressions (minute hour day-of-month month day-of-week), pure and stdlib only.

Used by ``Eval.spec.schedule.cron`` (validated with the model, so admission names the bad field) and by
the evals service, which asks for the newest tick at or before "now" (:meth:`Cron.latest`: a tick
missed while the operator was down runs once, never once per missed tick) and the next one
(:meth:`Cron.next`, to arm its timer).

Syntax, as in cron(5): each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a
comma-separated list of those; months and weekdays may be written as names (``jan``, ``mon``); weekday 0
and 7 are Sunday. When both day-of-month and day-of-week are restricted, a day matching either counts
(as in Vixie cron). Macros: ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``,
``@yearly`` (``@annually``).

Times are wall-clock times of a time zone (IANA name, default UTC). A wall-clock time skipped by a
daylight-saving change does not tick that day; a repeated one ticks once (its first occurrence).
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from typing import Final

__all__ = ["NIGHTLY", "Cron", "check_time_zone", "parse", "time_zone"]

NIGHTLY: Final = "0 0 * * *"
"""What ``schedule.nightly`` means: midnight of the schedule's time zone."""

_MACROS: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS: Final = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
_NAMES: Final = {
    "month": {
        m: i + 1
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        )
    },
    "day-of-week": {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_SEARCH_DAYS: Final = 366 * 8 + 2
"""How far :meth:`Cron.latest` and :meth:`Cron.next` look (a 29 February tick can be 8 years apart)."""


def time_zone(name: str | None) -> datetime.tzinfo:
    """The time zone ``name`` (None or empty: UTC); ValueError when it is not an IANA name."""
    if not name or name == "UTC":
        return datetime.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timeZone: {name!r} is not an IANA time zone such as Europe/Paris") from None


def check_time_zone(name: str) -> None:
    time_zone(name)


def _value(text: str, field: str, low: int, high: int) -> int:
    names = _NAMES.get(field, {})
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise ValueError(f"cron: {field} {text!r} is not a number{' or a name' if names else ''}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"cron: {field} {value} is out of range {low}-{high}")
    return value


def _field(text: str, field: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"cron: {field} {text!r} has an empty list item")
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"cron: {field} step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _value(first, field, low, high), _value(last, field, low, high)
            if start > end:
                raise ValueError(f"cron: {field} range {body!r} runs backwards")
        else:
            start = _value(body, field, low, high)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    if field == "day-of-week" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclasses.dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday."""
    any_day: bool
    any_weekday: bool

    def _day_matches(self, day: datetime.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week  # a field starting with * restricts nothing of its own
        return in_month or in_week

    def _ticks(self, day: datetime.date, tz: datetime.tzinfo) -> list[datetime.datetime]:
        """The day's ticks as aware UTC times, in order (skipped wall-clock times left out)."""
        out = []
        for hour in sorted(self.hours):
            for minute in sorted(self.minutes):
                local = datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
                utc = local.astimezone(datetime.UTC)
                if utc.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
                    continue  # skipped by a daylight-saving change
                out.append(utc)
        return out

    def latest(self, at: datetime.datetime, tz: datetime.tzinfo = datetime.UTC) -> datetime.datetime | None:
        """The newest tick at or before ``at`` (aware), in UTC; None when there is none in 8 years."""
        day = at.astimezone(tz).date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                ticks = [tick for tick in self._ticks(day, tz) if tick <= at]
                if ticks:
                    return ticks[-1]
            day -= datetime.timedelta(days=1)
        return None

    def next(self, after: datetime.datetime, tz: datetime.tzinfo = datetime.UTC) -> datetime.datetime | None:
        """The first tick strictly after ``after`` (aware), in UTC; None when there is none in 8 years."""
        day = after.astimezone(tz).date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                ticks = [tick for tick in self._ticks(day, tz) if tick > after]
                if ticks:
                    return ticks[0]
            day += datetime.timedelta(days=1)
        return None


def parse(expression: str) -> Cron:
    """The parsed ``expression``; ValueError naming the field and the reason when it is not one."""
    text = _MACROS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != len(_FIELDS):
        raise ValueError(
            f"cron: {expression!r} has {len(fields)} fields; want 5 (minute hour day-of-month month "
            "day-of-week) or a macro such as @daily"
        )
    parsed = [
        _field(value, name, low, high) for value, (name, low, high) in zip(fields, _FIELDS, strict=True)
    ]
    return Cron(
        expression=expression,
        minutes=parsed[0],
        hours=parsed[1],
        days=parsed[2],
        months=parsed[3],
        weekdays=parsed[4],
        any_day=fields[2] == "*" or fields[2].startswith("*/"),
        any_weekday=fields[4] == "*" or fields[4].startswith("*/"),
    )
