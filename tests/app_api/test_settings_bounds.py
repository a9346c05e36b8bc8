"""Settings that cannot work are refused when the process starts, not on the first request."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app_api.core.settings import Settings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sms_resend_cooldown_s", -1),  # Redis refuses a negative expiry: every code request was a 500
        ("sms_lock_s", 0),  # SET EX 0 is refused too: the fifth wrong code would answer 500
        ("sms_code_ttl_s", 0),
        ("sms_max_wrong", 0),
    ],
)
def test_values_that_cannot_work_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(**{field: value})
    assert field in str(err.value)


def test_zero_cooldown_is_accepted_as_no_cooldown() -> None:
    assert Settings(sms_resend_cooldown_s=0).sms_resend_cooldown_s == 0
