"""Citizen ID numbers for tests: valid (region, birth date, check digit) and never handed out twice
in one run.

The test database lives for the whole run, and an account's ID number is unique
(``uq_app_account_id_number_hash``), so two tests drawing the same number at random would make the
later one fail for a reason that has nothing to do with it. Import this module as ``tests.citizens``
only, so that the run has one registry.
"""

from __future__ import annotations

import datetime as dt
import secrets

from app_api.platform.datahub.citizen_id import make

_issued: set[str] = set()


def new_id_number(region: str = "341602", birth: dt.date | None = None) -> str:
    """A fresh, valid ID number; ``birth`` fixed when the test needs an age, else drawn from 1950–1999."""
    for _ in range(10_000):
        born = birth or dt.date(
            1950 + secrets.randbelow(50), 1 + secrets.randbelow(12), 1 + secrets.randbelow(28)
        )
        number = make(region, born, 1 + secrets.randbelow(999))
        if number not in _issued:
            _issued.add(number)
            return number
    raise RuntimeError(f"no unused ID number left for {region} born {birth}")
