"""Building a table object does not re-inspect its default factories' signatures (issue 19: it was
~9% of a submission's CPU)."""

from __future__ import annotations

from typing import Any

import pytest


def test_building_a_row_asks_no_signature_after_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic._internal import _fields, _typing_extra

    import app_api.core.db  # noqa: F401  (applies the memoization)
    from app_api.platform.notify.models import Notification

    assert getattr(_fields.takes_validated_data_argument, "_wojia_memoized", False), (
        "pydantic no longer has _fields.takes_validated_data_argument where app_api.core.db expects it"
    )
    first = Notification(account_id="a" * 32, template="test", text="正文")
    asked: list[Any] = []
    real = _typing_extra.signature_no_eval

    def counting(f: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(f)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(_typing_extra, "signature_no_eval", counting)
    rows = [Notification(account_id="a" * 32, template="test", text="正文") for _ in range(5)]
    assert asked == []
    # Each row still gets its own default values (the factories are called, only their signature is
    # remembered).
    ids = {first.id, *(r.id for r in rows)}
    assert len(ids) == 6
    assert all(r.created_at is not None for r in rows)
