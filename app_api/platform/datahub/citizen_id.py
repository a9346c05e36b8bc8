"""Citizen ID numbers (GB 11643-1999): 6-digit region, 8-digit birth date, 3-digit sequence, check digit."""

from __future__ import annotations

import datetime as dt
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_RE = re.compile(r"^[0-9]{17}[0-9X]$")  # ASCII: \d would also match full-width and other digits
# First two digits: the province-level region codes of GB/T 2260.
PROVINCES = frozenset(
    {
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
    }
)


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def problem(id_number: str, *, today: dt.date | None = None) -> str | None:
    """None if valid; otherwise a short Chinese reason a resident can act on."""
    n = id_number.strip().upper()
    if not _RE.match(n):
        return "身份证号码应为18位，最后一位可以是数字或X"
    if n[:2] not in PROVINCES:
        return "身份证号码的地区码不正确"
    try:
        birth = dt.date(int(n[6:10]), int(n[10:12]), int(n[12:14]))
    except ValueError:
        return "身份证号码中的出生日期不正确"
    if birth < dt.date(1900, 1, 1) or birth > (today or dt.date.today()):
        return "身份证号码中的出生日期不正确"
    if check_digit(n[:17]) != n[17]:
        return "身份证号码校验位不正确，请核对"
    return None


def birth_date(id_number: str) -> dt.date:
    return dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))


def gender(id_number: str) -> str:
    return "男" if int(id_number[16]) % 2 else "女"


def make(region: str, birth: dt.date, seq: int) -> str:
    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)
