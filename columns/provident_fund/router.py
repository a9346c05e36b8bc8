from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app_api.core.db import SessionDep
from app_api.core.paging import MAX_LIMIT, CursorQuery, LimitQuery
from app_api.platform.access import CurrentAccount
from app_api.platform.accounts.principal import Principal
from columns.provident_fund import service
from columns.provident_fund.dependencies import OwnedWithdrawal, StepUpWithdraw
from columns.provident_fund.schemas import (
    ContributionPage,
    Estimate,
    EstimateRequest,
    FundLoan,
    FundSummary,
    WithdrawalPublic,
    WithdrawalRequest,
)

router = APIRouter()
NEXT_CURSOR_HEADER = {
    "X-Next-Cursor": {"description": "下一页的 cursor（没有下一页时不返回）", "schema": {"type": "string"}}
}


@router.get("/account")
async def account(me: CurrentAccount, session: SessionDep) -> FundSummary:
    """Balance, monthly contribution, status and employer (from the center, now)."""
    return await service.summary(session, account_id=me.id)


@router.get("/contributions")
async def contributions(
    me: CurrentAccount, session: SessionDep, months: Annotated[int, Query(ge=1, le=60)] = 12
) -> ContributionPage:
    """Monthly contributions, newest first."""
    return await service.contributions(session, account_id=me.id, months=months)


@router.get("/loans")
async def loans(me: CurrentAccount, session: SessionDep) -> list[FundLoan]:
    """Provident-fund housing loans."""
    return await service.loans(session, account_id=me.id)


@router.post("/loan-estimate")
async def loan_estimate(body: EstimateRequest, me: CurrentAccount, session: SessionDep) -> Estimate:
    """How much could be borrowed, by the center's published rule (shown with the estimate)."""
    return await service.estimate(session, account_id=me.id, req=body)


@router.post("/withdrawals", status_code=202)
async def withdraw(
    body: WithdrawalRequest, session: SessionDep, me: Annotated[Principal, StepUpWithdraw]
) -> WithdrawalPublic:
    """Apply to withdraw (needs a fresh face check: header ``X-Step-Up-Token``)."""
    w = await service.apply_withdrawal(
        session,
        account_id=me.id,
        reason=body.reason,
        amount_fen=body.amount_fen,
        bank_account=body.bank_account,
    )
    return WithdrawalPublic.model_validate(w, from_attributes=True)


@router.get("/withdrawals", responses={200: {"headers": NEXT_CURSOR_HEADER}})
async def withdrawals(
    me: CurrentAccount,
    session: SessionDep,
    response: Response,
    cursor: CursorQuery = None,
    limit: LimitQuery = MAX_LIMIT,
) -> list[WithdrawalPublic]:
    """The resident's withdrawal applications, newest first.

    The body stays a plain list (older clients read it as one); the next page's cursor, when there
    is one, is in the ``X-Next-Cursor`` header.
    """
    rows, next_cursor = await service.list_withdrawals(session, account_id=me.id, cursor=cursor, limit=limit)
    if next_cursor:
        response.headers["X-Next-Cursor"] = next_cursor
    return [WithdrawalPublic.model_validate(w, from_attributes=True) for w in rows]


@router.get("/withdrawals/{withdrawal_id}")
async def withdrawal(w: OwnedWithdrawal) -> WithdrawalPublic:
    """One withdrawal application."""
    return WithdrawalPublic.model_validate(w, from_attributes=True)
