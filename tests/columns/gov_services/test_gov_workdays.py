"""The supervision clock: China's 2026 calendar, make-up days, pauses and warning levels."""

import datetime as dt

import pytest

from app_api.core.clock import CHINA_TZ
from columns.gov_services.workdays import (
    HolidayCalendar,
    add_working_days,
    clock_level,
    clock_start,
    default_calendar,
    due_at,
    elapsed_working_days,
    same_day,
    working_days_between,
)


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=CHINA_TZ)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        ("2026-01-01", False),  # 元旦
        ("2026-01-04", True),  # Sunday made a working day
        ("2026-02-14", True),  # Saturday before 春节
        ("2026-02-16", False),  # 春节 (Monday)
        ("2026-02-23", False),  # 正月初七, a Monday off
        ("2026-02-24", True),
        ("2026-02-28", True),  # Saturday made up
        ("2026-04-06", False),  # 清明 Monday
        ("2026-05-05", False),  # 劳动节 Tuesday
        ("2026-05-09", True),
        ("2026-06-19", False),  # 端午
        ("2026-09-20", True),  # Sunday made up before 国庆
        ("2026-09-25", False),  # 中秋
        ("2026-10-07", False),
        ("2026-10-10", True),  # Saturday made up
        ("2026-11-21", False),  # an ordinary Saturday
        ("2026-11-23", True),  # an ordinary Monday
        ("2025-10-08", False),  # 2025 国庆中秋 8 days
        ("2025-09-28", True),
    ],
)
def test_official_calendar(day: str, working: bool) -> None:
    assert default_calendar().is_working_day(dt.date.fromisoformat(day)) is working


def test_calendar_counts_2026_totals() -> None:
    cal = default_calendar()
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    # 261 weekdays, 19 of them holidays, plus 6 make-up weekend days.
    assert sum(cal.is_working_day(d) for d in days) == 248
    assert cal.knows(2026) and not cal.knows(2031)


def test_add_working_days_skips_spring_festival() -> None:
    # Accepted Friday 13 Feb 2026: Sat 14th is a make-up day, then nine days off.
    assert add_working_days(dt.date(2026, 2, 13), 1) == dt.date(2026, 2, 14)
    assert add_working_days(dt.date(2026, 2, 13), 2) == dt.date(2026, 2, 24)
    assert add_working_days(dt.date(2026, 2, 13), 0) == dt.date(2026, 2, 13)
    # 20 working days from 2026-09-18 run through 中秋 and 国庆 and use both make-up days.
    assert add_working_days(dt.date(2026, 9, 18), 20) == dt.date(2026, 10, 22)


def test_working_days_between_matches_add() -> None:
    start = dt.date(2026, 9, 18)
    for n in range(0, 30):
        assert working_days_between(start, add_working_days(start, n)) == n
    assert working_days_between(dt.date(2026, 3, 2), dt.date(2026, 3, 1)) == 0


def test_start_day_not_counted_and_elapsed_is_continuous() -> None:
    accepted = at(2026, 11, 23, 15, 30)  # Monday afternoon
    assert clock_start(accepted) == at(2026, 11, 24)
    assert elapsed_working_days(accepted, at(2026, 11, 23, 23, 59)) == 0
    assert elapsed_working_days(accepted, at(2026, 11, 24, 12)) == pytest.approx(0.5)
    # Friday 27th end: 4 days; the weekend adds nothing.
    assert elapsed_working_days(accepted, at(2026, 11, 30)) == pytest.approx(4.0)
    assert elapsed_working_days(accepted, at(2026, 11, 30, 6)) == pytest.approx(4.25)


def test_due_at_is_midnight_after_the_nth_working_day() -> None:
    accepted = at(2026, 9, 30, 10)  # the day before 国庆
    # 1st working day after is Thursday 8 Oct, 2nd 9 Oct, 3rd Saturday 10 Oct (make-up day).
    assert due_at(accepted, 3) == at(2026, 10, 11)
    assert elapsed_working_days(accepted, at(2026, 10, 11)) == pytest.approx(3.0)


def test_supplement_pauses_the_clock() -> None:
    accepted = at(2026, 11, 23, 9)
    paused = (at(2026, 11, 25, 12), at(2026, 12, 2, 12))  # 补正 from Wednesday noon to next Wednesday noon
    plain_due = due_at(accepted, 5)
    paused_due = due_at(accepted, 5, pauses=[paused])
    assert plain_due == at(2026, 12, 1)
    # 1.5 days used before the pause; 3.5 left from Wednesday 2 Dec noon run out at the end of Monday 7 Dec.
    assert paused_due == at(2026, 12, 8)
    assert elapsed_working_days(accepted, at(2026, 12, 2, 12), pauses=[paused]) == pytest.approx(1.5)
    # Still paused (no resume yet): no due date, and the clock stands still.
    open_pause = (at(2026, 11, 25, 12), None)
    assert due_at(accepted, 5, pauses=[open_pause]) is None
    assert elapsed_working_days(accepted, at(2027, 1, 20), pauses=[open_pause]) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("elapsed", "limit", "level"),
    [
        (0.0, 5, "green"),
        (3.99, 5, "green"),
        (4.0, 5, "yellow"),
        (4.99, 5, "yellow"),
        (5.0, 5, "red"),
        (9, 5, "red"),
        (0.0, 0, "green"),
        (0.1, 0, "red"),
        (16, 20, "yellow"),
    ],
)
def test_clock_levels(elapsed: float, limit: int, level: str) -> None:
    assert clock_level(elapsed, limit) == level


def test_extended_calendar_and_bad_input() -> None:
    cal = default_calendar().extended(holidays=[dt.date(2027, 1, 1)], workdays=[dt.date(2027, 1, 2)])
    assert not cal.is_working_day(dt.date(2027, 1, 1)) and cal.is_working_day(dt.date(2027, 1, 2))
    assert cal.knows(2027)
    with pytest.raises(ValueError):
        HolidayCalendar(frozenset({dt.date(2026, 1, 1)}), frozenset({dt.date(2026, 1, 1)}))
    with pytest.raises(ValueError):
        HolidayCalendar.from_mapping({"2026": {"holidays": ["2025-12-31"]}})
    with pytest.raises(ValueError):
        elapsed_working_days(dt.datetime(2026, 1, 5), at(2026, 1, 9))  # naive
    with pytest.raises(ValueError):
        add_working_days(dt.date(2026, 1, 5), -1)


def test_same_day_uses_local_time() -> None:
    # 23:30 UTC on the 22nd is 07:30 on the 23rd in Bozhou.
    a = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC)
    assert same_day(a, at(2026, 11, 23, 17))
    assert not same_day(a, at(2026, 11, 22, 23))
