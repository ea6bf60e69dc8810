"""Cron schedules of ``AgBOM.spec.refresh.schedule`` (pure): parse five fields, find the next time.

Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12), day of week (0-7, 0 and 7 are
Sunday). Each is ``*``, a number, a range ``a-b``, any of those with a step ``/n``, or a comma list of
them. As in cron, when both day fields are restricted a day matching either one matches. Times are UTC.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Final

__all__ = ["Schedule", "ScheduleError", "parse"]

_FIELDS: Final = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_HORIZON_DAYS: Final = 366 * 5
"""How far ahead a match is looked for (a schedule such as '0 0 30 2 *' never matches)."""


class ScheduleError(ValueError):
    """A schedule that does not parse; the message names the field and the reason."""


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def _day_matches(self, day: datetime.date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return by_weekday
        if self.any_weekday:
            return by_date
        return by_date or by_weekday

    def next_after(self, moment: datetime.datetime) -> datetime.datetime | None:
        """The first matching minute strictly after ``moment`` (UTC), or None within five years."""
        start = moment.astimezone(datetime.UTC).replace(second=0, microsecond=0) + datetime.timedelta(
            minutes=1
        )
        day = start.date()
        for offset in range(_HORIZON_DAYS):
            current = day + datetime.timedelta(days=offset)
            if not self._day_matches(current):
                continue
            for hour in sorted(self.hours):
                for minute in sorted(self.minutes):
                    candidate = datetime.datetime(
                        current.year, current.month, current.day, hour, minute, tzinfo=datetime.UTC
                    )
                    if candidate >= start:
                        return candidate
        return None


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
        except ValueError:
            raise ScheduleError(f"{name}: step {step_text!r} is not a number") from None
        if step < 1:
            raise ScheduleError(f"{name}: step must be at least 1")
        if base == "*":
            first, last = low, high
        else:
            first_text, _, last_text = base.partition("-")
            try:
                first = int(first_text)
                last = int(last_text) if last_text else (high if step_text else first)
            except ValueError:
                raise ScheduleError(f"{name}: {part!r} is not a number, range or *") from None
            if not (low <= first <= high and low <= last <= high) or first > last:
                raise ScheduleError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse(text: str) -> Schedule:
    """The schedule of five cron fields; raises :class:`ScheduleError` naming the bad field."""
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise ScheduleError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    values = [_field(part, name, low, high) for part, (name, low, high) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(day % 7 for day in values[4])
    return Schedule(
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )
