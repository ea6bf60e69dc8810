"""Five-field cron expressions (joch.api.cron) and the Eval schedule model that uses them.

Parse errors name the field and the reason (field count, out of range, a zero step, a backwards range, an
unknown name); macros and month/weekday names; weekday 7 is Sunday; the Vixie OR rule when both
day-of-month and day-of-week are restricted; ``latest`` (at or before, inclusive) and ``next`` (strictly
after); time zones (a Berlin midnight in UTC across the year, a wall time skipped by daylight saving does
not tick, a repeated one ticks once, an unknown zone names timeZone); 29 February. The Eval model
rejects a bad ``schedule.cron`` (naming cron) and cron together with nightly.
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
import pytest

from joch.api import cron
from joch.api.v1alpha1.eval import Eval
from tests.factories import eval_

UTC = datetime.UTC
BERLIN = cron.time_zone("Europe/Berlin")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- parse errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "wanted"),
    [
        ("* * * *", ["4 fields", "want 5"]),
        ("* * * * * *", ["6 fields", "want 5"]),
        ("", ["0 fields"]),
        ("61 * * * *", ["minute", "61", "out of range 0-59"]),
        ("0 24 * * *", ["hour", "24", "out of range 0-23"]),
        ("0 0 0 * *", ["day-of-month", "out of range 1-31"]),
        ("0 0 32 * *", ["day-of-month", "32", "out of range 1-31"]),
        ("0 0 * 13 *", ["month", "13", "out of range 1-12"]),
        ("0 0 * * 8", ["day-of-week", "8", "out of range 0-7"]),
        ("*/0 * * * *", ["minute", "step", "positive"]),
        ("0 */x * * *", ["hour", "step", "positive"]),
        ("0 5-2 * * *", ["hour", "'5-2'", "backwards"]),
        ("0 0 * foo *", ["month", "'foo'", "not a number or a name"]),
        ("0 0 * * funday", ["day-of-week", "'funday'", "not a number or a name"]),
        ("x * * * *", ["minute", "'x'", "not a number"]),
        ("1,,2 * * * *", ["minute", "empty list item"]),
        ("@fortnightly", ["1 fields", "macro"]),
    ],
)
def test_a_bad_expression_names_the_field_and_the_reason(expression: str, wanted: list[str]) -> None:
    with pytest.raises(ValueError, match=r"^cron: ") as raised:
        cron.parse(expression)
    message = str(raised.value)
    for part in wanted:
        assert part in message


def test_a_minute_field_has_no_names() -> None:
    with pytest.raises(ValueError, match=r"minute 'jan' is not a number$"):
        cron.parse("jan * * * *")


# --- what a field means -----------------------------------------------------------------------------


def test_fields_lists_ranges_and_steps() -> None:
    parsed = cron.parse("0,15,30-32 */6 1-10/3 * *")
    assert parsed.minutes == {0, 15, 30, 31, 32}
    assert parsed.hours == {0, 6, 12, 18}
    assert parsed.days == {1, 4, 7, 10}
    assert parsed.months == set(range(1, 13))
    assert parsed.any_day is False
    assert parsed.any_weekday is True


def test_a_number_with_a_step_runs_to_the_end_of_the_field() -> None:
    assert cron.parse("50/5 * * * *").minutes == {50, 55}


@pytest.mark.parametrize(
    ("macro", "same_as"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_mean_their_expression(macro: str, same_as: str) -> None:
    parsed, expanded = cron.parse(macro), cron.parse(same_as)
    assert parsed.expression == macro
    for field in ("minutes", "hours", "days", "months", "weekdays", "any_day", "any_weekday"):
        assert getattr(parsed, field) == getattr(expanded, field)


def test_daily_and_hourly_ticks() -> None:
    now = at(2026, 5, 6, 13, 45)
    daily, hourly = cron.parse("@daily"), cron.parse("@hourly")
    assert daily.latest(now) == at(2026, 5, 6)
    assert daily.next(now) == at(2026, 5, 7)
    assert hourly.latest(now) == at(2026, 5, 6, 13)
    assert hourly.next(now) == at(2026, 5, 6, 14)


def test_month_and_weekday_names_in_any_case() -> None:
    parsed = cron.parse("0 0 * JAN,mar-May mon-FRI")
    assert parsed.months == {1, 3, 4, 5}
    assert parsed.weekdays == {1, 2, 3, 4, 5}
    assert cron.parse("0 0 * * sun").weekdays == {0}


def test_weekday_7_is_sunday() -> None:
    assert cron.parse("0 0 * * 7").weekdays == {0}
    assert cron.parse("0 0 * * 5-7").weekdays == {5, 6, 0}
    # 2026-05-10 is a Sunday.
    seven, zero = cron.parse("0 9 * * 7"), cron.parse("0 9 * * 0")
    assert seven.next(at(2026, 5, 6)) == zero.next(at(2026, 5, 6)) == at(2026, 5, 10, 9)


def test_weekdays_only_when_day_of_month_is_any() -> None:
    weekdays = cron.parse("30 2 * * 1-5")
    # Friday 2026-05-08 02:30, then Monday 2026-05-11.
    assert weekdays.next(at(2026, 5, 8)) == at(2026, 5, 8, 2, 30)
    assert weekdays.next(at(2026, 5, 8, 3)) == at(2026, 5, 11, 2, 30)


def test_both_days_restricted_means_either_vixie_rule() -> None:
    first_or_monday = cron.parse("0 0 1 * mon")
    ticks = []
    moment = at(2026, 5, 27)
    for _ in range(4):
        tick = first_or_monday.next(moment)
        assert tick is not None
        ticks.append(tick.date())
        moment = tick
    # Monday 2026-06-01 is also the first; Mondays 8, 15, 22 follow (the 1st is not repeated).
    assert ticks == [
        datetime.date(2026, 6, 1),
        datetime.date(2026, 6, 8),
        datetime.date(2026, 6, 15),
        datetime.date(2026, 6, 22),
    ]
    # The 1st of July is a Wednesday: it ticks because the day of the month matches.
    assert first_or_monday.next(at(2026, 6, 29, 1)) == at(2026, 7, 1)


def test_a_restricted_day_of_month_alone_ignores_the_weekday() -> None:
    thirteenth = cron.parse("0 0 13 * *")
    assert thirteenth.next(at(2026, 5, 1)) == at(2026, 5, 13)
    friday_or_13th = cron.parse("0 0 13 * 5")  # either: the 13th or any Friday
    # After Friday 2026-05-01 00:00: Friday the 8th, then Wednesday the 13th, then Friday the 15th.
    assert friday_or_13th.next(at(2026, 5, 1)) == at(2026, 5, 8)
    assert friday_or_13th.next(at(2026, 5, 8)) == at(2026, 5, 13)
    assert friday_or_13th.next(at(2026, 5, 13)) == at(2026, 5, 15)


STAR_STEP_BUG = (
    "cron.py Cron._day_matches (lines 132-137) with parse's any_day/any_weekday (lines 194-195): a "
    "'*/n' day field counts as unrestricted and its values are then ignored, so '0 0 */2 * *' ticks "
    "every day and '0 0 * * */2' every weekday; Vixie cron ANDs the two day fields when either starts "
    "with '*'"
)


def test_a_day_of_month_step_skips_days() -> None:
    every_other_day = cron.parse("0 0 */2 * *")  # days 1, 3, 5, ...
    assert every_other_day.days == set(range(1, 32, 2))
    assert every_other_day.next(at(2026, 5, 1)) == at(2026, 5, 3)
    assert every_other_day.latest(at(2026, 5, 4, 12)) == at(2026, 5, 3)


def test_a_day_of_week_step_skips_weekdays() -> None:
    sun_tue_thu_sat = cron.parse("0 0 * * */2")
    assert sun_tue_thu_sat.weekdays == {0, 2, 4, 6}
    # After Tuesday 2026-05-05: Thursday the 7th, not Wednesday the 6th.
    assert sun_tue_thu_sat.next(at(2026, 5, 5)) == at(2026, 5, 7)


def test_a_starred_day_of_month_step_and_a_weekday_must_both_match() -> None:
    # Vixie: day-of-month starts with '*', so both fields must match: Mondays on odd days.
    odd_mondays = cron.parse("0 0 */2 * 1")
    assert odd_mondays.next(at(2026, 5, 1)) == at(2026, 5, 11)  # Monday the 4th is even


# --- latest and next --------------------------------------------------------------------------------


def test_latest_is_at_or_before_and_next_strictly_after() -> None:
    every_quarter = cron.parse("*/15 * * * *")
    tick = at(2026, 5, 6, 10, 30)
    assert every_quarter.latest(tick) == tick  # inclusive
    assert every_quarter.next(tick) == at(2026, 5, 6, 10, 45)  # strictly after
    just_before = tick - datetime.timedelta(microseconds=1)
    assert every_quarter.latest(just_before) == at(2026, 5, 6, 10, 15)
    assert every_quarter.next(just_before) == tick


def test_latest_goes_back_across_days_months_and_years() -> None:
    new_year = cron.parse("0 0 1 1 *")
    assert new_year.latest(at(2026, 5, 6)) == at(2026, 1, 1)
    assert new_year.next(at(2026, 5, 6)) == at(2027, 1, 1)
    assert cron.parse("0 12 * * *").latest(at(2026, 5, 6, 11, 59)) == at(2026, 5, 5, 12)


def test_results_are_utc() -> None:
    tick = cron.parse("@hourly").latest(datetime.datetime(2026, 5, 6, 10, 30, tzinfo=BERLIN))
    assert tick == at(2026, 5, 6, 8)
    assert tick is not None
    assert tick.utcoffset() == datetime.timedelta(0)


def test_29_february_is_found_years_apart() -> None:
    leap = cron.parse("0 0 29 2 *")
    assert leap.latest(at(2026, 6, 1)) == at(2024, 2, 29)
    assert leap.next(at(2026, 6, 1)) == at(2028, 2, 29)
    assert leap.next(at(2096, 3, 1)) == at(2104, 2, 29)  # 2100 is not a leap year: 8 years apart


def test_an_impossible_date_has_no_tick() -> None:
    never = cron.parse("0 0 30 2 *")
    assert never.latest(at(2026, 6, 1)) is None
    assert never.next(at(2026, 6, 1)) is None


# --- time zones -------------------------------------------------------------------------------------


def test_midnight_in_berlin_is_23_or_22_utc() -> None:
    midnight = cron.parse("0 0 * * *")
    # Winter (CET, +1): 23:00 UTC the day before; summer (CEST, +2): 22:00 UTC.
    assert midnight.latest(at(2026, 1, 15, 12), BERLIN) == at(2026, 1, 14, 23)
    assert midnight.latest(at(2026, 7, 15, 12), BERLIN) == at(2026, 7, 14, 22)
    assert midnight.next(at(2026, 1, 15, 12), BERLIN) == at(2026, 1, 15, 23)
    assert midnight.next(at(2026, 7, 15, 12), BERLIN) == at(2026, 7, 15, 22)
    # 22:30 UTC in July is already after Berlin's midnight.
    assert midnight.latest(at(2026, 7, 15, 22, 30), BERLIN) == at(2026, 7, 15, 22)


def test_a_wall_time_skipped_by_daylight_saving_does_not_tick_that_day() -> None:
    half_past_two = cron.parse("30 2 * * *")
    # On 2026-03-29 Berlin clocks jump from 02:00 to 03:00.
    assert half_past_two.next(at(2026, 3, 28, 12), BERLIN) == at(2026, 3, 30, 0, 30)
    assert half_past_two.latest(at(2026, 3, 29, 12), BERLIN) == at(2026, 3, 28, 1, 30)
    # The hours around the gap still tick.
    assert cron.parse("30 1,3 * * *").next(at(2026, 3, 29, 0, 31), BERLIN) == at(2026, 3, 29, 1, 30)


def test_a_repeated_wall_time_ticks_once() -> None:
    half_past_two = cron.parse("30 2 * * *")
    # On 2026-10-25 Berlin goes from 03:00 CEST back to 02:00 CET: 02:30 happens twice.
    first = half_past_two.next(at(2026, 10, 24, 12), BERLIN)
    assert first == at(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert half_past_two.next(first, BERLIN) == at(2026, 10, 26, 1, 30)


def test_time_zone_names() -> None:
    assert cron.time_zone(None) is UTC
    assert cron.time_zone("") is UTC
    assert cron.time_zone("UTC") is UTC
    assert str(cron.time_zone("Europe/Berlin")) == "Europe/Berlin"


@pytest.mark.parametrize("name", ["Mars/Olympus", "Europe/Nowhere", "not a zone", "../etc/passwd"])
def test_an_unknown_time_zone_names_time_zone(name: str) -> None:
    with pytest.raises(ValueError, match=r"^timeZone: .* is not an IANA time zone"):
        cron.time_zone(name)
    with pytest.raises(ValueError, match=r"^timeZone: "):
        cron.check_time_zone(name)


# --- the Eval model ---------------------------------------------------------------------------------


def scheduled(**schedule: Any) -> dict[str, Any]:
    return eval_(phase=None, schedule=schedule)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [("61 * * * *", "minute 61 is out of range"), ("*/0 * * * *", "step"), ("* * *", "3 fields")],
)
def test_a_bad_schedule_cron_is_a_validation_error_naming_cron(expression: str, reason: str) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        Eval.model_validate(scheduled(cron=expression))
    errors = raised.value.errors()
    assert [e["loc"] for e in errors] == [("spec", "schedule", "cron")]
    assert "cron: " in errors[0]["msg"]
    assert reason in errors[0]["msg"]


def test_a_good_schedule_cron_and_a_macro_are_accepted() -> None:
    for expression in ("30 2 * * 1-5", "@daily", "0 0 * jan mon"):
        model = Eval.model_validate(scheduled(cron=expression, timeZone="Europe/Berlin"))
        assert model.spec.schedule is not None
        assert model.spec.schedule.cron == expression


def test_an_unknown_schedule_time_zone_names_time_zone() -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        Eval.model_validate(scheduled(cron="@daily", timeZone="Mars/Olympus"))
    errors = raised.value.errors()
    assert [e["loc"] for e in errors] == [("spec", "schedule", "timeZone")]
    assert "timeZone: 'Mars/Olympus'" in errors[0]["msg"]


def test_cron_together_with_nightly_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        Eval.model_validate(scheduled(cron="@hourly", nightly=True))
    assert "either cron or nightly, not both" in str(raised.value)
    # nightly: false next to cron is fine.
    Eval.model_validate(scheduled(cron="@hourly", nightly=False))
    Eval.model_validate(scheduled(nightly=True))
