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


async def test_an_object_built_at_once_is_the_one_the_constructor_builds_and_is_stored_as_such() -> None:
    """``db.built``: the same fields, defaults (each its own), fields set and dump as
    ``Consent(**given)``; inserted by the session as any new object, and read back equal."""
    import datetime as dt
    import uuid

    from app_api.core.crypto import encrypt_str, lookup_hash
    from app_api.core.db import built, model_row, session_scope, sessionmaker
    from app_api.platform.accounts.models import Account
    from app_api.platform.consent.models import Consent

    phone = f"138{uuid.uuid4().int % 10**8:08d}"
    async with session_scope() as s:
        account = Account(
            phone_hash=lookup_hash(phone, purpose="phone"), phone_enc=encrypt_str(phone, aad="phone")
        )
        s.add(account)
    given: dict[str, Any] = {
        "account_id": account.id,
        "purpose": "gov.prefill",
        "scopes": ["population.basic"],
        "expires_at": dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    }
    fast = built(Consent, model_row(Consent, given), given)
    slow = Consent(**given)
    each_time = {"id", "granted_at"}
    assert {k: v for k, v in fast.model_dump().items() if k not in each_time} == {
        k: v for k, v in slow.model_dump().items() if k not in each_time
    }
    assert fast.model_fields_set == slow.model_fields_set == set(given)
    assert fast.id != slow.id and fast.granted_at is not None and fast.withdrawn_at is None
    # A mutable default is the object's own.
    other = built(Consent, model_row(Consent, {"account_id": account.id, "purpose": "p"}), {"account_id"})
    other.scopes.append("x")
    assert built(Consent, model_row(Consent, {"account_id": account.id, "purpose": "p"}), set()).scopes == []
    async with session_scope() as s:
        s.add(fast)
    async with sessionmaker()() as s:
        stored = await s.get(Consent, fast.id)
        assert stored is not None and stored.model_dump() == fast.model_dump()
