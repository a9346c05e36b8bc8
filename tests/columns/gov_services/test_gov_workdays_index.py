"""The running-total clock (``workdays.WorkingDayIndex``) gives exactly what the day-by-day walk gave.

The reference below is the walk as it stood before the index (a frozen copy, so a later change to
the module cannot move both sides): random starts, instants and pauses over the shipped 2025-2026
calendar, the years around it (weekends only), other time zones, and calendars with extra holidays
and make-up days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app_api.core.clock import CHINA_TZ
from columns.gov_services import workdays
from columns.gov_services.workdays import HolidayCalendar, default_calendar

Pause = tuple[dt.datetime, dt.datetime | None]

# ---------------------------------------------------------------- the walk, as it was


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    begin = dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TZ)
    return begin, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=CHINA_TZ)


def _segments(
    begin: dt.datetime, pauses: Sequence[Pause], cal: HolidayCalendar
) -> Iterable[tuple[dt.datetime, dt.datetime]]:
    # (The walk sorted the (start, end) pairs and so raised TypeError on two pauses starting at
    # the same instant, one of them open; sorting by start alone gives the same cut otherwise.)
    norm = sorted(((p0, p1) for p0, p1 in pauses), key=lambda p: p[0])
    day = begin.astimezone(CHINA_TZ).date()
    for _ in range(3_650 * 3):
        if cal.is_working_day(day):
            lo, hi = _day_bounds(day)
            lo = max(lo, begin)
            pieces = [(lo, hi)] if lo < hi else []
            for p0, p1 in norm:
                cut: list[tuple[dt.datetime, dt.datetime]] = []
                for s, e in pieces:
                    stop = p1 if p1 is not None else e
                    if p0 >= e or stop <= s:
                        cut.append((s, e))
                        continue
                    if s < p0:
                        cut.append((s, p0))
                    if stop < e:
                        cut.append((stop, e))
                pieces = cut
            yield from pieces
            if any(p1 is None and p0 < _day_bounds(day)[1] for p0, p1 in norm):
                return
        day += dt.timedelta(days=1)


def _clock_start(started_at: dt.datetime) -> dt.datetime:
    day = started_at.astimezone(CHINA_TZ).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TZ)


def walk_elapsed(
    started_at: dt.datetime, now: dt.datetime, pauses: Sequence[Pause], cal: HolidayCalendar
) -> float:
    total = 0.0
    for s, e in _segments(_clock_start(started_at), pauses, cal):
        if s >= now:
            break
        total += (min(e, now) - s).total_seconds()
    return total / 86_400


def walk_due(
    started_at: dt.datetime, limit_days: int, pauses: Sequence[Pause], cal: HolidayCalendar
) -> dt.datetime | None:
    begin = _clock_start(started_at)
    if limit_days == 0:
        return begin
    remaining = float(limit_days * 86_400)
    for s, e in _segments(begin, pauses, cal):
        span = (e - s).total_seconds()
        if span >= remaining:
            return s + dt.timedelta(seconds=remaining)
        remaining -= span
    return None


def walk_between(start: dt.date, end: dt.date, cal: HolidayCalendar) -> int:
    return sum(cal.is_working_day(start + dt.timedelta(days=i + 1)) for i in range((end - start).days))


# ---------------------------------------------------------------- random instants and pauses

BASE = dt.datetime(2024, 9, 1, tzinfo=CHINA_TZ)
ZONES = st.sampled_from([CHINA_TZ, dt.UTC, dt.timezone(dt.timedelta(hours=-5))])


@st.composite
def instants(draw: st.DrawFn, *, micro: bool = False, span_days: int = 900) -> dt.datetime:
    # Whole minutes often (midnight and day ends exactly), seconds or microseconds otherwise.
    if draw(st.booleans()):
        at = BASE + dt.timedelta(minutes=draw(st.integers(0, span_days * 1440)))
    else:
        at = BASE + dt.timedelta(seconds=draw(st.integers(0, span_days * 86_400)))
    if micro:
        at += dt.timedelta(microseconds=draw(st.integers(0, 999_999)))
    return at.astimezone(draw(ZONES))


@st.composite
def pause_lists(draw: st.DrawFn, start: dt.datetime, micro: bool = False) -> list[Pause]:
    out: list[Pause] = []
    for _ in range(draw(st.integers(0, 4))):
        p0 = start + dt.timedelta(minutes=draw(st.integers(-3 * 1440, 120 * 1440)))
        if micro:
            p0 += dt.timedelta(microseconds=draw(st.integers(0, 999_999)))
        p0 = p0.astimezone(draw(ZONES))
        p1 = (
            None
            if draw(st.integers(0, 5)) == 0
            else p0 + dt.timedelta(seconds=draw(st.integers(0, 40 * 86_400)))
        )
        out.append((p0, p1))
    return out


@st.composite
def calendars(draw: st.DrawFn) -> HolidayCalendar:
    if draw(st.booleans()):
        return default_calendar()
    days = st.dates(dt.date(2024, 9, 1), dt.date(2027, 6, 30))
    off = draw(st.sets(days, max_size=12))
    return default_calendar().extended(holidays=off, workdays=draw(st.sets(days, max_size=6)) - off)


@st.composite
def cases(
    draw: st.DrawFn, micro: bool = False
) -> tuple[dt.datetime, dt.datetime, list[Pause], HolidayCalendar]:
    start = draw(instants(micro=micro, span_days=700))
    now = start + dt.timedelta(seconds=draw(st.integers(-86_400, 200 * 86_400)))
    if micro:
        now += dt.timedelta(microseconds=draw(st.integers(0, 999_999)))
    return start, now, draw(pause_lists(start, micro)), draw(calendars())


SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cases())
def test_elapsed_equals_the_walk(case: tuple[dt.datetime, dt.datetime, list[Pause], HolidayCalendar]) -> None:
    start, now, pauses, cal = case
    assert workdays.elapsed_working_days(start, now, pauses=pauses, cal=cal) == walk_elapsed(
        start, now, pauses, cal
    )


@SETTINGS
@given(cases(micro=True))
def test_elapsed_equals_the_walk_to_the_microsecond(
    case: tuple[dt.datetime, dt.datetime, list[Pause], HolidayCalendar],
) -> None:
    start, now, pauses, cal = case
    got = workdays.elapsed_working_days(start, now, pauses=pauses, cal=cal)
    # The walk adds floats piece by piece; one microsecond is 1.2e-11 of a day.
    assert abs(got - walk_elapsed(start, now, pauses, cal)) < 1e-11


@SETTINGS
@given(cases(), st.integers(0, 40))
def test_due_equals_the_walk(
    case: tuple[dt.datetime, dt.datetime, list[Pause], HolidayCalendar], limit: int
) -> None:
    start, _, pauses, cal = case
    assert workdays.due_at(start, limit, pauses=pauses, cal=cal) == walk_due(start, limit, pauses, cal)


@SETTINGS
@given(cases(micro=True), st.integers(1, 40))
def test_due_equals_the_walk_to_the_microsecond(
    case: tuple[dt.datetime, dt.datetime, list[Pause], HolidayCalendar], limit: int
) -> None:
    start, _, pauses, cal = case
    got, want = workdays.due_at(start, limit, pauses=pauses, cal=cal), walk_due(start, limit, pauses, cal)
    assert (got is None) == (want is None)
    if got is not None and want is not None:
        assert abs(got - want) <= dt.timedelta(microseconds=1)


@settings(max_examples=300, deadline=None)
@given(
    st.dates(dt.date(2024, 1, 1), dt.date(2028, 12, 31)),
    st.integers(0, 400),
    st.integers(0, 60),
    calendars(),
)
def test_day_counts_equal_the_walk(start: dt.date, span: int, days: int, cal: HolidayCalendar) -> None:
    end = start + dt.timedelta(days=span)
    assert workdays.working_days_between(start, end, cal) == walk_between(start, end, cal)
    assert workdays.working_days_between(end, start, cal) == 0
    due = workdays.add_working_days(start, days, cal)
    assert walk_between(start, due, cal) == days
    assert due == start or cal.is_working_day(due)


def test_outside_the_index_the_walk_answers() -> None:
    """Before 1992 (daylight saving years) and after 2100 the walk itself answers."""
    cal = default_calendar()
    for start in (
        dt.datetime(1989, 4, 10, 9, tzinfo=CHINA_TZ),
        dt.datetime(2100, 12, 20, 9, tzinfo=CHINA_TZ),
    ):
        now = start + dt.timedelta(days=30)
        pauses: list[Pause] = [(start + dt.timedelta(days=3), start + dt.timedelta(days=5))]
        assert workdays.elapsed_working_days(start, now, pauses=pauses, cal=cal) == walk_elapsed(
            start, now, pauses, cal
        )
        assert workdays.due_at(start, 15, pauses=pauses, cal=cal) == walk_due(start, 15, pauses, cal)


def test_a_pause_ending_before_it_starts_keeps_the_walks_answer() -> None:
    start = dt.datetime(2026, 3, 2, 10, tzinfo=CHINA_TZ)
    pauses: list[Pause] = [(start + dt.timedelta(days=4, hours=5), start + dt.timedelta(days=4, hours=1))]
    now = start + dt.timedelta(days=10)
    assert workdays.elapsed_working_days(start, now, pauses=pauses) == walk_elapsed(
        start, now, pauses, default_calendar()
    )


def test_a_changed_calendar_gets_its_own_running_total() -> None:
    """A holiday added to the calendar moves the clock at once: indexes are per calendar content."""
    start = dt.datetime(2026, 3, 2, 10, tzinfo=CHINA_TZ)  # a Monday; the clock starts on Tuesday
    now = dt.datetime(2026, 3, 6, 12, tzinfo=CHINA_TZ)  # Friday noon
    cal = default_calendar()
    assert workdays.elapsed_working_days(start, now, cal=cal) == 3.5
    local = cal.extended(holidays=[dt.date(2026, 3, 4)])
    assert workdays.elapsed_working_days(start, now, cal=local) == 2.5
    assert workdays.working_day_index(local) is not workdays.working_day_index(cal)
    assert workdays.working_day_index(cal.extended()) is workdays.working_day_index(cal)
    workdays.clear_indexes()
    assert workdays.elapsed_working_days(start, now, cal=local) == 2.5
