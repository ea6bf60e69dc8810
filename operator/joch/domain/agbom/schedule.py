"""Cron schedules of ``AgBOM.spec.refresh.schedule`` (pure): parse five fields, find the next time.

Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12), day of week (0-7, 0 and 7 are
Sunday). Each is ``*``, a number, a range ``a-b``, any of those with a step ``/n``, or a comma list of
them. As in cron, when both day fields are restricted a day matching either one matches. Times are UTC.
Parsing is this module's (its messages name the AgBOM's fields); finding the times is joch.api.cron's.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Final

from joch.api.cron import Cron

__all__ = ["Schedule", "ScheduleError", "parse"]

_FIELDS: Final = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


class ScheduleError(ValueError):
    """A schedule that does not parse; the message names the field and the reason."""


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule; the times are found by :class:`joch.api.cron.Cron` (the Eval schedules' too)."""

    cron: Cron

    def next_after(self, moment: datetime.datetime) -> datetime.datetime | None:
        """The first matching minute strictly after ``moment`` (UTC), or None when there is none."""
        return self.cron.next(moment, datetime.UTC)


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
        Cron(
            expression=text,
            minutes=values[0],
            hours=values[1],
            days=values[2],
            months=values[3],
            weekdays=weekdays,
            any_day=parts[2] == "*",
            any_weekday=parts[4] == "*",
        )
    )
