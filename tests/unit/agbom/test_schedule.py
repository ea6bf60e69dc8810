"""AgBOM refresh schedules (joch.domain.agbom.schedule): cron fields, the next time, clear errors."""

from __future__ import annotations

import datetime

import pytest

from joch.domain.agbom import schedule

UTC = datetime.UTC
AT = datetime.datetime(2026, 12, 3, 21, 30, 15, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 3 * * *", datetime.datetime(2026, 12, 4, 3, 0, tzinfo=UTC)),
        ("*/15 * * * *", datetime.datetime(2026, 12, 3, 21, 45, tzinfo=UTC)),
        ("31 21 * * *", datetime.datetime(2026, 12, 3, 21, 31, tzinfo=UTC)),
        ("30 21 * * *", datetime.datetime(2026, 12, 4, 21, 30, tzinfo=UTC)),  # strictly after
        ("0 0 * * 0", datetime.datetime(2026, 12, 6, 0, 0, tzinfo=UTC)),  # Sunday
        ("0 0 * * 7", datetime.datetime(2026, 12, 6, 0, 0, tzinfo=UTC)),  # 7 is Sunday too
        ("0 9 1 * *", datetime.datetime(2027, 1, 1, 9, 0, tzinfo=UTC)),
        ("0 9 1-5,20 12 *", datetime.datetime(2026, 12, 4, 9, 0, tzinfo=UTC)),
        ("0 9 6-10,20 12 *", datetime.datetime(2026, 12, 6, 9, 0, tzinfo=UTC)),
        ("0 12 25 * 1", datetime.datetime(2026, 12, 7, 12, 0, tzinfo=UTC)),  # day 25 OR Monday
        ("0 0 29 2 *", datetime.datetime(2028, 2, 29, 0, 0, tzinfo=UTC)),
    ],
)
def test_next_time(text: str, expected: datetime.datetime) -> None:
    assert schedule.parse(text).next_after(AT) == expected


def test_a_schedule_that_never_fires_has_no_next_time() -> None:
    assert schedule.parse("0 0 30 2 *").next_after(AT) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 3 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("0 24 * * *", "hour: '24' is outside 0-23"),
        ("0 0 0 * *", "day of month: '0' is outside 1-31"),
        ("0 0 * 13 *", "month: '13' is outside 1-12"),
        ("0 0 * * 8", "day of week: '8' is outside 0-7"),
        ("*/0 * * * *", "minute: step must be at least 1"),
        ("*/x * * * *", "minute: step 'x' is not a number"),
        ("a * * * *", "minute: 'a' is not a number, range or *"),
        ("5-1 * * * *", "minute: '5-1' is outside 0-59"),
    ],
)
def test_bad_schedules_name_the_field(text: str, message: str) -> None:
    with pytest.raises(schedule.ScheduleError) as raised:
        schedule.parse(text)
    assert str(raised.value) == message
