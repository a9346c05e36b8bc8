"""Working-day clocks for supervision (电子监察): pure functions over a holiday calendar.

Time limits of government service items are counted in working days (《行政许可法》第八十二条:
"期限以工作日计算，不含法定节假日"), and the day the clock starts is not counted (期间开始的当日
不计入). A working day is Monday to Friday unless the State Council's yearly notice makes it a
holiday, plus the make-up Saturdays and Sundays (调休上班) that notice lists.

Clocks are continuous: a working day contributes its 24 local hours (Asia/Shanghai), holidays and
weekends contribute nothing, and pauses (a supplement requested from the resident, 补正) contribute
nothing. So "elapsed 4.0 of 5 working days" is exact at any instant, and a limit of N days ends at
midnight after the Nth working day following the start day.

The clocks answer from a running total (:class:`WorkingDayIndex`): for every date from 1992 to 2100,
how many working days precede it, built once per holiday calendar and kept in-process. Elapsed time
between two instants is then two look-ups, minus two per pause, instead of a walk over every day;
instants outside the index (or malformed pauses) fall back to the walk, which defines the semantics.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from array import array
from bisect import bisect_left
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


# ---------------------------------------------------------------- the running total

# China has kept UTC+8 without daylight saving since 1991, so from 1992 on a local day is 24 hours
# and wall-clock differences are real ones; the index covers 1992-2100 and leaves anything outside
# to the day-by-day walk.
INDEX_FIRST = dt.date(1992, 1, 1)
INDEX_END = dt.date(2101, 1, 1)
DAY_US = DAY_SECONDS * 1_000_000
_HORIZON_DAYS = MAX_LIMIT_DAYS * 3  # the walk's bound: days from the clock's start it looks at


class WorkingDayIndex:
    """Cumulative working days per date for one holiday calendar.

    ``before[i]`` is the number of working days in ``[INDEX_FIRST, INDEX_FIRST + i)``, so working
    days in any date range are one subtraction and the working time before any instant (its
    :meth:`running` total) is O(1).
    """

    __slots__ = ("before", "days")

    def __init__(self, cal: HolidayCalendar) -> None:
        self.days = (INDEX_END - INDEX_FIRST).days
        before = array("l", [0]) * (self.days + 1)
        count = 0
        day = INDEX_FIRST
        one = dt.timedelta(days=1)
        for i in range(self.days):
            before[i] = count
            if cal.is_working_day(day):
                count += 1
            day += one
        before[self.days] = count
        self.before = before

    def offset(self, day: dt.date) -> int | None:
        i = (day - INDEX_FIRST).days
        return i if 0 <= i < self.days else None

    def working(self, i: int) -> bool:
        return self.before[i + 1] > self.before[i]

    def running(self, at: dt.datetime) -> int | None:
        """Working time (microseconds) from ``INDEX_FIRST`` to ``at``; ``None`` outside the index."""
        local = at.astimezone(CHINA_TZ)
        i = self.offset(local.date())
        if i is None:
            return None
        total = self.before[i] * DAY_US
        if self.before[i + 1] > self.before[i]:
            total += ((local.hour * 60 + local.minute) * 60 + local.second) * 1_000_000 + local.microsecond
        return total

    def instant(self, total: int) -> dt.datetime | None:
        """The earliest instant whose :meth:`running` total reaches ``total`` (> 0); ``None`` when
        it falls outside the index."""
        k = -(-total // DAY_US) - 1  # the 0-based working day it falls in
        j = bisect_left(self.before, k + 1)
        if k < 0 or j > self.days:
            return None
        midnight = dt.datetime.combine(INDEX_FIRST + dt.timedelta(days=j - 1), dt.time(), tzinfo=CHINA_TZ)
        return midnight + dt.timedelta(microseconds=total - k * DAY_US)


_indexes: dict[HolidayCalendar, WorkingDayIndex] = {}
_indexes_lock = threading.Lock()
_MAX_INDEXES = 8


def working_day_index(cal: HolidayCalendar) -> WorkingDayIndex:
    """The calendar's index, built on first use and kept in-process.

    Keyed by the calendar's content: calendars are immutable, so a changed holiday schedule (a new
    ``holidays.json``, an :meth:`HolidayCalendar.extended` calendar) is a different key and gets
    its own index; :func:`clear_indexes` drops them all (with ``default_calendar.cache_clear()``
    when the shipped file is reloaded).
    """
    index = _indexes.get(cal)
    if index is None:
        index = WorkingDayIndex(cal)
        with _indexes_lock:
            if len(_indexes) >= _MAX_INDEXES:
                _indexes.pop(next(iter(_indexes)))
            _indexes[cal] = index
    return index


def clear_indexes() -> None:
    with _indexes_lock:
        _indexes.clear()


def _merged(pauses: Sequence[Pause]) -> list[tuple[dt.datetime, dt.datetime | None]] | None:
    """Pauses sorted and merged (``None`` end: still paused); ``None`` when one ends before it
    starts (the walk's answer for that is kept)."""
    out: list[tuple[dt.datetime, dt.datetime | None]] = []
    for p0, p1 in sorted(pauses, key=lambda p: p[0]):
        if p1 is not None and p1 < p0:
            return None
        if out:
            q0, q1 = out[-1]
            if q1 is None:
                break
            if p0 <= q1:
                out[-1] = (q0, None if p1 is None else max(q1, p1))
                continue
        out.append((p0, p1))
    return out


def _elapsed_fast(
    begin: dt.datetime, now: dt.datetime, pauses: Sequence[Pause], index: WorkingDayIndex
) -> float | None:
    if now <= begin:
        return 0.0
    merged = _merged(pauses)
    if merged is None:
        return None
    horizon = dt.datetime.combine(
        local_date(begin) + dt.timedelta(days=_HORIZON_DAYS), dt.time(), tzinfo=CHINA_TZ
    )
    end = min(now, horizon)
    w_begin, w_end = index.running(begin), index.running(end)
    if w_begin is None or w_end is None:
        return None
    total = w_end - w_begin
    for p0, p1 in merged:
        lo = max(p0, begin)
        hi = end if p1 is None else min(p1, end)
        if hi <= lo:
            continue
        w_lo, w_hi = index.running(lo), index.running(hi)
        if w_lo is None or w_hi is None:
            return None
        total -= w_hi - w_lo
    return (total / 1_000_000) / DAY_SECONDS


def _due_fast(
    begin: dt.datetime, limit_days: int, pauses: Sequence[Pause], index: WorkingDayIndex
) -> tuple[dt.datetime | None] | None:
    """``(due,)`` from the index, or ``None`` when the walk must answer."""
    merged = _merged(pauses)
    if merged is None:
        return None
    remaining = limit_days * DAY_US
    cur = begin
    w_cur = index.running(cur)
    if w_cur is None:
        return None
    for p0, p1 in merged:
        if p1 is not None and p1 <= cur:
            continue
        if p0 > cur:
            w_p0 = index.running(p0)
            if w_p0 is None:
                return None
            if w_p0 - w_cur >= remaining:
                break
            remaining -= w_p0 - w_cur
        if p1 is None:
            return (None,)
        cur = p1
        w_cur = index.running(cur)
        if w_cur is None:
            return None
    found = index.instant(w_cur + remaining)
    horizon = dt.datetime.combine(
        local_date(begin) + dt.timedelta(days=_HORIZON_DAYS), dt.time(), tzinfo=CHINA_TZ
    )
    if found is None or found > horizon:
        return None
    return (found,)


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
    if days == 0:
        return start
    index = working_day_index(cal)
    i = index.offset(start)
    if i is not None:
        # The target is the day after which ``before`` first reaches ``before[i + 1] + days``.
        j = bisect_left(index.before, index.before[i + 1] + days)
        if j <= index.days:
            return INDEX_FIRST + dt.timedelta(days=j - 1)
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
    index = working_day_index(cal)
    i, j = index.offset(start), index.offset(end)
    if i is not None and j is not None:
        return index.before[j + 1] - index.before[i + 1]
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
    begin = clock_start(started_at)
    fast = _elapsed_fast(begin, now, pauses, working_day_index(cal))
    if fast is not None:
        return fast
    return _elapsed_walk(begin, now, pauses, cal)


def _elapsed_walk(
    begin: dt.datetime, now: dt.datetime, pauses: Sequence[Pause], cal: HolidayCalendar
) -> float:
    """The day-by-day definition of :func:`elapsed_working_days` (outside the index)."""
    total = 0.0
    for s, e in _active_segments(begin, pauses, cal):
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
    fast = _due_fast(begin, limit_days, pauses, working_day_index(cal))
    if fast is not None:
        return fast[0]
    return _due_walk(begin, limit_days, pauses, cal)


def _due_walk(
    begin: dt.datetime, limit_days: int, pauses: Sequence[Pause], cal: HolidayCalendar
) -> dt.datetime | None:
    """The day-by-day definition of :func:`due_at` (outside the index)."""
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
