"""Outstanding bills: asked of every biller at once, stored when they change, and the last view
shown (with what went wrong) when a biller cannot be asked."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import new_id, utcnow
from app_api.core.errors import AppError
from app_api.platform.capabilities import UnpaidBill
from columns.utilities.adapters import RemoteBill, get_adapter
from columns.utilities.bindings import active_bindings
from columns.utilities.config import kind_name
from columns.utilities.models import Bill, BillStatus, Binding


@dataclass
class BindingBills:
    binding: Binding
    bills: list[Bill]
    error: AppError | None  # the biller could not be asked: ``bills`` are what we saw last


async def _fetch(binding: Binding) -> list[RemoteBill] | AppError:
    try:
        return await get_adapter(binding.biller_code).outstanding_bills(account_no=binding.account_no)
    except AppError as exc:
        return exc


async def _upsert(session: AsyncSession, pairs: list[tuple[str, str, RemoteBill]]) -> None:
    if not pairs:
        return
    table = Bill.__table__  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    now = utcnow()
    rows = [
        dict(
            id=new_id(),
            biller_code=code,
            account_no=acct,
            bill_no=r.bill_no,
            period=r.period,
            amount_fen=r.amount_fen,
            due_date=r.due_date,
            usage=r.usage[:40],
            status=BillStatus.OUTSTANDING.value,
            first_seen_at=now,
            last_seen_at=now,
        )
        for code, acct, r in pairs
    ]
    # Two listings at once may both see a new bill: the constraint keeps one row.
    await session.exec(
        insert(table).values(rows).on_conflict_do_nothing(index_elements=["biller_code", "bill_no"])
    )


async def _local_bills(session: AsyncSession, pairs: set[tuple[str, str]]) -> list[Bill]:
    if not pairs:
        return []
    rows = await session.exec(
        select(Bill)
        .where(sa.tuple_(col(Bill.biller_code), col(Bill.account_no)).in_(list(pairs)))
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def refresh(session: AsyncSession, bindings: Sequence[Binding]) -> list[BindingBills]:
    """Ask every biller at once; store what changed; fall back to the last view on failure.

    A listing that finds nothing new writes nothing (no write lock on SQLite, no dead tuples on
    PostgreSQL): only new bills, changed amounts and bills settled elsewhere are written.
    """
    answers = await asyncio.gather(*(_fetch(b) for b in bindings))
    pairs = {(b.biller_code, b.account_no) for b in bindings}
    local = await _local_bills(session, pairs)
    known = {(x.biller_code, x.bill_no) for x in local}
    new = [
        (b.biller_code, b.account_no, r)
        for b, ans in zip(bindings, answers, strict=True)
        if not isinstance(ans, AppError)
        for r in ans
        if (b.biller_code, r.bill_no) not in known
    ]
    if new:
        await _upsert(session, new)
        local = await _local_bills(session, pairs)
    out = []
    for binding, ans in zip(bindings, answers, strict=True):
        mine = [
            x for x in local if x.biller_code == binding.biller_code and x.account_no == binding.account_no
        ]
        if isinstance(ans, AppError):
            shown = [x for x in mine if x.status == BillStatus.OUTSTANDING]
            out.append(BindingBills(binding, sorted(shown, key=lambda x: x.due_date), ans))
            continue
        remote = {r.bill_no: r for r in ans}
        shown = []
        for bill in mine:
            r = remote.get(bill.bill_no)
            if r is not None and bill.status == BillStatus.OUTSTANDING:
                if bill.amount_fen != r.amount_fen or bill.due_date != r.due_date:
                    bill.amount_fen, bill.due_date = r.amount_fen, r.due_date  # e.g. a late fee added
                    bill.last_seen_at = utcnow()
                    session.add(bill)
                shown.append(bill)
            elif r is None and bill.status == BillStatus.OUTSTANDING:
                # Paid at a counter or another app: no longer ours to collect.
                bill.status = BillStatus.SETTLED_ELSEWHERE.value
                bill.last_seen_at = utcnow()
                session.add(bill)
        out.append(BindingBills(binding, sorted(shown, key=lambda x: x.due_date), None))
    await session.flush()
    return out


async def outstanding(session: AsyncSession, *, account_id: str) -> list[BindingBills]:
    return await refresh(session, await active_bindings(session, account_id=account_id))


async def unpaid_bills(session: AsyncSession, *, account_id: str) -> list[UnpaidBill]:
    """The resident's outstanding bills as the ``UtilityBills`` capability hands them out."""
    return [
        UnpaidBill(
            title=f"{kind_name(group.binding.kind)} {bill.period}",
            biller=group.binding.biller_code,
            amount_fen=bill.amount_fen,
            due_date=bill.due_date.isoformat(),
        )
        for group in await outstanding(session, account_id=account_id)
        for bill in group.bills
        if bill.status == "outstanding"
    ]
