"""How a column learns that its purpose was paid: exactly once, through the outbox.

A column registers one handler per purpose it creates orders for, at import time (its
``tasks.py`` or ``service.py``)::

    from payments.api import PaidPurpose, on_paid

    @on_paid("utilities.bill")
    async def bill_paid(session: AsyncSession, paid: PaidPurpose) -> None:
        ...  # mark the bills paid, tell the biller (through the column's own outbox job)

The handler runs inside the same transaction that records the notification of the column
(``column_notified_at``): both commit together or neither does, so a retried job never calls the
handler a second time for an order whose handler already committed. The handler must only write
to the database (or enqueue its own outbox jobs); it must not call external systems itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession


@dataclass(frozen=True, slots=True)
class PaidPurpose:
    order_id: str
    out_trade_no: str
    account_id: str
    purpose: str
    purpose_ref: str
    amount_fen: int
    provider: str
    paid_at: dt.datetime


PaidHandler = Callable[[AsyncSession, PaidPurpose], Awaitable[None]]
_handlers: dict[str, PaidHandler] = {}


def register_paid_handler(purpose: str, handler: PaidHandler) -> None:
    existing = _handlers.get(purpose)
    if existing is not None and existing is not handler:
        raise ValueError(f"purpose {purpose!r} already has a paid handler")
    _handlers[purpose] = handler


def on_paid(purpose: str) -> Callable[[PaidHandler], PaidHandler]:
    def deco(fn: PaidHandler) -> PaidHandler:
        register_paid_handler(purpose, fn)
        return fn

    return deco


def paid_handler(purpose: str) -> PaidHandler | None:
    return _handlers.get(purpose)
