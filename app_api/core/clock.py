"""China time: the one time-zone constant, and the dates residents and providers mean.

Timestamps are stored timezone-aware in UTC; business dates (a bill's day, a deadline, a
certificate's validity) are China dates.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

CHINA_TZ = ZoneInfo("Asia/Shanghai")


def china_now() -> dt.datetime:
    return dt.datetime.now(CHINA_TZ)


def china_today() -> dt.date:
    return china_now().date()
