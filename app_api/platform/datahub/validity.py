"""How long an e-certificate is valid: until the day before its anniversary, in China dates."""

from __future__ import annotations

import datetime as dt


def anniversary(start: dt.date, years: int) -> dt.date:
    """``start`` moved ``years`` years on; 29 February falls on 1 March in a common year (the day
    after 28 February, so a period counted from 29 February is never a day short)."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return dt.date(start.year + years, 3, 1)


def valid_until(issued_on: dt.date, years: int | None) -> dt.date | None:
    """The last day a certificate issued on ``issued_on`` for ``years`` years is valid (inclusive):
    the day before its anniversary. None: valid without end."""
    if not years:
        return None
    if years < 0:
        raise ValueError("years must be positive")
    return anniversary(issued_on, years) - dt.timedelta(days=1)
