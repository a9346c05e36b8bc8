"""Provident fund: read-through to the center for the account, contributions and loans; loan
estimates computed here from the rule the center publishes (returned with the estimate, with every
limit that was considered); withdrawal applications recorded here and handed to the center through
the outbox (idempotent at the center on our application id)."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.core.crypto import encrypt_str, mask_name
from app_api.core.db import session_scope, utcnow
from app_api.core.jobs import outbox
from app_api.core.money import fen_to_yuan
from app_api.platform import audit, notify
from app_api.platform.accounts.models import Account
from columns.provident_fund.center import get_center
from columns.provident_fund.config import get_config
from columns.provident_fund.errors import (
    CenterUnavailable,
    EstimateInvalid,
    RealNameMissing,
    WithdrawalNotFound,
    WithdrawalRefused,
)
from columns.provident_fund.models import Withdrawal, WithdrawalStatus
from columns.provident_fund.schemas import (
    Contribution,
    ContributionPage,
    Estimate,
    EstimateRequest,
    FundLoan,
    FundSummary,
    Limit,
    RuleUsed,
)

notify.register_template(
    "provident_fund.withdrawal_accepted",
    "您的公积金提取申请（$reason，$amount元）已由公积金中心受理，受理号$application_no。",
)
notify.register_template(
    "provident_fund.withdrawal_refused",
    "您的公积金提取申请（$reason，$amount元）未被受理：$message",
)


async def _id_number(session: AsyncSession, account_id: str) -> str:
    account = await session.get(Account, account_id)
    number = account.id_number if account else None
    if not number:
        raise RealNameMissing()
    return number


async def summary(session: AsyncSession, *, account_id: str) -> FundSummary:
    d = await get_center().person(await _id_number(session, account_id))
    try:
        return FundSummary(
            account_no=d["account_no"],
            holder_masked=mask_name(d["name"]),
            status=d["status"],
            employer=d["employer"],
            balance_fen=int(d["balance_fen"]),
            monthly_fen=int(d["monthly_fen"]),
            base_fen=int(d["base_fen"]),
            employer_rate=str(d["employer_rate"]),
            personal_rate=str(d["personal_rate"]),
            opened_on=dt.date.fromisoformat(d["opened_on"]),
            months_contributed=int(d["months_contributed"]),
            center=get_config().center_name,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CenterUnavailable(reason="unreadable") from exc


async def contributions(session: AsyncSession, *, account_id: str, months: int) -> ContributionPage:
    s = await summary(session, account_id=account_id)
    try:
        items = [
            Contribution(
                month=i["month"],
                employer_fen=int(i["employer_fen"]),
                personal_fen=int(i["personal_fen"]),
                total_fen=int(i["employer_fen"]) + int(i["personal_fen"]),
                employer=i["employer"],
            )
            for i in await get_center().contributions(s.account_no, months)
        ]
    except (KeyError, ValueError, TypeError) as exc:
        raise CenterUnavailable(reason="unreadable") from exc
    return ContributionPage(items=items, total_fen=sum(i.total_fen for i in items))


async def loans(session: AsyncSession, *, account_id: str) -> list[FundLoan]:
    s = await summary(session, account_id=account_id)
    try:
        return [
            FundLoan(
                loan_no=x["loan_no"],
                principal_fen=int(x["principal_fen"]),
                outstanding_fen=int(x["outstanding_fen"]),
                annual_rate=str(x["annual_rate"]),
                term_months=int(x["term_months"]),
                monthly_payment_fen=int(x["monthly_payment_fen"]),
                next_due_on=dt.date.fromisoformat(x["next_due_on"]) if x.get("next_due_on") else None,
                status=x["status"],
            )
            for x in await get_center().loans(s.account_no)
        ]
    except (KeyError, ValueError, TypeError) as exc:
        raise CenterUnavailable(reason="unreadable") from exc


# -- the estimate -------------------------------------------------------------------------------


def annuity_payment(principal_fen: int, annual_rate_pct: Decimal, months: int) -> int:
    """等额本息 monthly payment, rounded up to the fen."""
    if principal_fen <= 0:
        return 0
    r = annual_rate_pct / Decimal(1200)
    if r == 0:
        return int((Decimal(principal_fen) / months).to_integral_value(ROUND_CEILING))
    f = (1 + r) ** months
    return int((Decimal(principal_fen) * r * f / (f - 1)).to_integral_value(ROUND_CEILING))


def principal_for_payment(payment_fen: int, annual_rate_pct: Decimal, months: int) -> int:
    r = annual_rate_pct / Decimal(1200)
    if r == 0:
        return payment_fen * months
    f = (1 + r) ** months
    return int((Decimal(payment_fen) * (f - 1) / (r * f)).to_integral_value(ROUND_FLOOR))


def compute_estimate(rule: dict[str, Any], fund: FundSummary, req: EstimateRequest) -> Estimate:
    """Pure: the rule as the center published it, the resident's account, the request."""
    try:
        multiple = int(rule["balance_multiple"])
        cap = int(rule["max_couple_fen"] if req.co_borrower else rule["max_single_fen"])
        ltv = Decimal(rule["loan_to_price_first"] if req.first_home else rule["loan_to_price_second"])
        income_ratio = Decimal(rule["income_ratio"])
        max_term = int(rule["max_term_years"])
        min_months = int(rule["min_contribution_months"])
        key = ("first" if req.first_home else "second") + ("_upto5" if req.term_years <= 5 else "_over5")
        rate = Decimal(str(rule[f"rate_{key}"]))
        used = RuleUsed(
            rule_id=rule["rule_id"],
            title=rule["title"],
            published_on=dt.date.fromisoformat(rule["published_on"]),
        )
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        raise CenterUnavailable(reason="rule_unreadable") from exc
    if req.term_years > max_term:
        raise EstimateInvalid(f"贷款期限最长{max_term}年", max_term_years=max_term)
    if fund.status != "正常缴存" or fund.months_contributed < min_months:
        raise EstimateInvalid(f"申请公积金贷款需正常连续缴存满{min_months}个月", rule_id=used.rule_id)
    months = req.term_years * 12
    which = "首套" if req.first_home else "二套"
    income = fund.base_fen + (req.co_borrower_income_fen if req.co_borrower else 0)
    max_payment = int(Decimal(income) * income_ratio)
    limits = [
        Limit(
            name="缴存余额倍数",
            amount_fen=fund.balance_fen * multiple,
            how=f"账户余额{fen_to_yuan(fund.balance_fen)}元 × {multiple}倍",
        ),
        Limit(
            name="最高贷款额度",
            amount_fen=cap,
            how=("夫妻双方" if req.co_borrower else "单方") + "缴存最高额度",
        ),
        Limit(
            name="房价比例",
            amount_fen=int(Decimal(req.house_price_fen) * ltv),
            how=f"房价{fen_to_yuan(req.house_price_fen)}元 × {ltv * 100:.0f}%（{which}）",
        ),
        Limit(
            name="还款能力",
            amount_fen=principal_for_payment(max_payment, rate, months),
            how=(
                f"月还款不超过月收入{fen_to_yuan(income)}元的{income_ratio * 100:.0f}%"
                f"（{fen_to_yuan(max_payment)}元）"
            ),
        ),
    ]
    binding = min(limits, key=lambda x: x.amount_fen)
    amount = binding.amount_fen // 100_000 * 100_000  # whole thousands of yuan, as the center grants
    payment = annuity_payment(amount, rate, months)
    return Estimate(
        max_loan_fen=amount,
        term_years=req.term_years,
        annual_rate=f"{rate}%",
        monthly_payment_fen=payment,
        total_interest_fen=max(0, payment * months - amount),
        limits=limits,
        binding_limit=binding.name,
        rule=used,
        note="测算结果仅供参考，以公积金中心审批为准（等额本息，额度取各项上限中的最低值并按千元取整）",
    )


async def estimate(session: AsyncSession, *, account_id: str, req: EstimateRequest) -> Estimate:
    fund = await summary(session, account_id=account_id)
    return compute_estimate(await get_center().loan_rule(), fund, req)


# -- withdrawals --------------------------------------------------------------------------------


def mask_bank(number: str) -> str:
    return f"{number[:4]} **** **** {number[-4:]}"


async def apply_withdrawal(
    session: AsyncSession, *, account_id: str, reason: str, amount_fen: int, bank_account: str
) -> Withdrawal:
    fund = await summary(session, account_id=account_id)
    if amount_fen > fund.balance_fen:
        raise WithdrawalRefused(
            f"提取金额超过账户余额{fen_to_yuan(fund.balance_fen)}元", balance_fen=fund.balance_fen
        )
    w = Withdrawal(
        account_id=account_id,
        fund_account_no=fund.account_no,
        reason=reason,
        amount_fen=amount_fen,
        bank_account_enc=encrypt_str(bank_account, aad="provident_fund.bank"),
        bank_account_masked=mask_bank(bank_account),
    )
    session.add(w)
    await session.flush()
    await audit.record(
        session,
        action="provident_fund.withdrawal_applied",
        actor_id=account_id,
        subject_type="provident_fund_withdrawal",
        subject_id=w.id,
        data={"reason": reason, "amount_fen": amount_fen},
    )
    await outbox.enqueue(session, "provident_fund.submit_withdrawal", withdrawal_id=w.id)
    return w


async def submit_withdrawal(withdrawal_id: str) -> str:
    """Hand one application to the center (outbox job; raises to be retried while unreachable)."""
    from app_api.core.crypto import decrypt_str

    async with session_scope() as session:
        w = (
            await session.exec(select(Withdrawal).where(Withdrawal.id == withdrawal_id).with_for_update())
        ).first()
        if w is None or w.status != WithdrawalStatus.SUBMITTING:
            return "done"
        w.attempts += 1
        session.add(w)
        account_no, reason, amount_fen = w.fund_account_no, w.reason, w.amount_fen
        bank_account = decrypt_str(w.bank_account_enc, aad="provident_fund.bank")
    try:
        d = await get_center().withdraw(
            account_no=account_no,
            reason=reason,
            amount_fen=amount_fen,
            bank_account=bank_account,
            app_ref=withdrawal_id,
        )
        outcome, number, message = (
            WithdrawalStatus.ACCEPTED,
            str(d.get("application_no")),
            str(d.get("status", "")),
        )
    except WithdrawalRefused as exc:
        outcome, number, message = WithdrawalStatus.REFUSED, None, exc.detail
    except CenterUnavailable:
        async with session_scope() as session:
            w = await session.get(Withdrawal, withdrawal_id)
            assert w is not None
            if w.attempts >= get_config().withdrawal_retry_max:
                w.status, w.center_message = (
                    WithdrawalStatus.FAILED.value,
                    "公积金中心暂时无法受理，请稍后重新申请",
                )
                session.add(w)
                return "failed"
        raise
    async with session_scope() as session:
        w = (
            await session.exec(select(Withdrawal).where(Withdrawal.id == withdrawal_id).with_for_update())
        ).one()
        if w.status != WithdrawalStatus.SUBMITTING:
            return "done"
        w.status, w.application_no, w.center_message, w.decided_at = (
            outcome.value,
            number,
            message[:200],
            utcnow(),
        )
        session.add(w)
        await audit.record(
            session,
            action=f"provident_fund.withdrawal_{outcome.value}",
            subject_type="provident_fund_withdrawal",
            subject_id=w.id,
            data={"application_no": number},
        )
        params = {
            "reason": w.reason,
            "amount": fen_to_yuan(w.amount_fen),
            "application_no": number or "",
            "message": message,
        }
        await notify.send(
            session,
            account_id=w.account_id,
            template=f"provident_fund.withdrawal_{outcome.value}",
            params=params,
        )
    return outcome.value


async def list_withdrawals(
    session: AsyncSession, *, account_id: str, cursor: str | None, limit: int
) -> tuple[list[Withdrawal], str | None]:
    """The resident's withdrawals newest first, after ``cursor``, and the next page's cursor."""
    q = paging.after(
        select(Withdrawal).where(Withdrawal.account_id == account_id),
        at_column=col(Withdrawal.created_at),
        id_column=col(Withdrawal.id),
        cursor=cursor,
        limit=limit,
    )
    return paging.page((await session.exec(q)).all(), limit=limit, key=lambda w: (w.created_at, w.id))


async def owned_withdrawal(session: AsyncSession, *, account_id: str, withdrawal_id: str) -> Withdrawal:
    w = await session.get(Withdrawal, withdrawal_id)
    if w is None or w.account_id != account_id:
        raise WithdrawalNotFound()
    return w
