"""Working-day clocks for supervision (电子监察): pure functions over a holiday calendar.

Time limits of government service items are counted in working days (《行政许可法》第八十二条:
"期限以工作日计算，不含法定节假日"), and the day the clock starts is not counted (期间开始的当日
不计入). A working day is Monday to Friday unless the State Council's yearly notice makes it a
holiday, plus the make-up Saturdays and Sundays (调休上班) that notice lists.

Clocks are continuous: a working day contributes its 24 local hours (Asia/Shanghai), holidays and
weekends contribute nothing, and pauses (a supplement requested from the resident, 补正) contribute
nothing. So "elapsed 4.0 of 5 working days" is exact at any instant, and a limit of N days ends at
midnight after the Nth working day following the start day.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from app_api.core.clock import CHINA_TZ

DAY_SECONDS = 86_400
YELLOW_AT = 0.8
RED_AT = 1.0
# No item has a limit anywhere near this; it bounds the walk when data is wrong.
MAX_LIMIT_DAYS = 3_650

HOLIDAYS_FILE = Path(__file__).parent / "data" / "holidays.json"

Pause = tuple[dt.datetime, dt.datetime | None]
ClockLevel = Literal["green", "yellow", "red"]


@dataclass(frozen=True)
class HolidayCalendar:
    """Official days off and make-up working days, by date.

    ``years`` are the years whose official schedule is loaded; for other years only weekends are
    known, which :meth:`knows` lets supervision report instead of silently guessing.
    """

    holidays: frozenset[dt.date] = field(default_factory=frozenset)
    workdays: frozenset[dt.date] = field(default_factory=frozenset)
    years: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        both = self.holidays & self.workdays
        if both:
            raise ValueError(f"dates both holiday and working day: {sorted(both)}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> HolidayCalendar:
        holidays: set[dt.date] = set()
        workdays: set[dt.date] = set()
        years: set[int] = set()
        for key, value in data.items():
            if not key.isdigit():
                continue
            year = int(key)
            years.add(year)
            for name, target in (("holidays", holidays), ("workdays", workdays)):
                for raw in value.get(name, []):
                    day = dt.date.fromisoformat(raw)
                    if day.year != year:
                        raise ValueError(f"{raw} listed under {year}")
                    target.add(day)
        return cls(frozenset(holidays), frozenset(workdays), frozenset(years))

    def extended(
        self, *, holidays: Iterable[dt.date] = (), workdays: Iterable[dt.date] = ()
    ) -> HolidayCalendar:
        """A calendar with extra days (for example a local holiday or next year's notice)."""
        new_h, new_w = frozenset(holidays), frozenset(workdays)
        return HolidayCalendar(
            (self.holidays - new_w) | new_h,
            (self.workdays - new_h) | new_w,
            self.years | {d.year for d in new_h | new_w},
        )

    def knows(self, year: int) -> bool:
        return year in self.years

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5


@lru_cache
def default_calendar() -> HolidayCalendar:
    """China's official calendar as shipped in ``data/holidays.json``."""
    return HolidayCalendar.from_mapping(json.loads(HOLIDAYS_FILE.read_text(encoding="utf-8")))


def local_date(at: dt.datetime) -> dt.date:
    _require_aware(at)
    return at.astimezone(CHINA_TZ).date()


def add_working_days(start: dt.date, days: int, cal: HolidayCalendar | None = None) -> dt.date:
    """The ``days``-th working day after ``start`` (``start`` itself is not counted).

    ``days == 0`` gives ``start``: a same-day (即办) item is due the day it starts.
    """
    cal = cal or default_calendar()
    if days < 0 or days > MAX_LIMIT_DAYS:
        raise ValueError(f"working days out of range: {days}")
    day = start
    remaining = days
    while remaining:
        day += dt.timedelta(days=1)
        if cal.is_working_day(day):
            remaining -= 1
    return day


def working_days_between(start: dt.date, end: dt.date, cal: HolidayCalendar | None = None) -> int:
    """Working days in ``(start, end]``: how many whole working days have passed since ``start``."""
    cal = cal or default_calendar()
    if end <= start:
        return 0
    count = 0
    day = start
    while day < end:
        day += dt.timedelta(days=1)
        if cal.is_working_day(day):
            count += 1
    return count


def clock_start(started_at: dt.datetime) -> dt.datetime:
    """Midnight (local) after ``started_at``: the start day is not counted."""
    day = local_date(started_at) + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TZ)


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    begin = dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TZ)
    return begin, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=CHINA_TZ)


def _require_aware(at: dt.datetime) -> None:
    if at.tzinfo is None:
        raise ValueError("naive datetime: clocks need timezone-aware datetimes")


def _active_segments(
    begin: dt.datetime, pauses: Sequence[Pause], cal: HolidayCalendar
) -> Iterable[tuple[dt.datetime, dt.datetime]]:
    """Running intervals from ``begin`` on: working days minus pauses, in order, unbounded."""
    norm = sorted((p0, p1) for p0, p1 in pauses)
    day = local_date(begin)
    for _ in range(MAX_LIMIT_DAYS * 3):
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
            # An open pause stops the clock for good: nothing after it runs.
            if any(p1 is None and p0 < _day_bounds(day)[1] for p0, p1 in norm):
                return
        day += dt.timedelta(days=1)


def elapsed_working_days(
    started_at: dt.datetime,
    now: dt.datetime,
    *,
    pauses: Sequence[Pause] = (),
    cal: HolidayCalendar | None = None,
) -> float:
    """Working days used between ``started_at`` and ``now``, not counting the start day or pauses.

    A pause is ``(paused_at, resumed_at)``; ``resumed_at=None`` means still paused.
    """
    cal = cal or default_calendar()
    _require_aware(now)
    for p0, p1 in pauses:
        _require_aware(p0)
        if p1 is not None:
            _require_aware(p1)
    total = 0.0
    for s, e in _active_segments(clock_start(started_at), pauses, cal):
        if s >= now:
            break
        total += (min(e, now) - s).total_seconds()
    return total / DAY_SECONDS


def due_at(
    started_at: dt.datetime,
    limit_days: int,
    *,
    pauses: Sequence[Pause] = (),
    cal: HolidayCalendar | None = None,
) -> dt.datetime | None:
    """The instant the limit runs out, or ``None`` while the clock is paused with no end."""
    cal = cal or default_calendar()
    if limit_days < 0 or limit_days > MAX_LIMIT_DAYS:
        raise ValueError(f"limit out of range: {limit_days}")
    begin = clock_start(started_at)
    if limit_days == 0:
        return begin
    remaining = float(limit_days * DAY_SECONDS)
    for s, e in _active_segments(begin, pauses, cal):
        span = (e - s).total_seconds()
        if span >= remaining:
            return s + dt.timedelta(seconds=remaining)
        remaining -= span
    return None


def clock_level(elapsed_days: float, limit_days: int) -> ClockLevel:
    """Green below 80% of the limit, yellow from 80%, red from 100% (超期)."""
    if limit_days <= 0:
        return "red" if elapsed_days > 0 else "green"
    ratio = elapsed_days / limit_days
    if ratio >= RED_AT:
        return "red"
    if ratio >= YELLOW_AT:
        return "yellow"
    return "green"


def same_day(a: dt.datetime, b: dt.datetime) -> bool:
    """Whether two instants fall on the same local date (当日办结)."""
    return local_date(a) == local_date(b)
