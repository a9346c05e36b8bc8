"""Closing a resident's account (注销账户; PIPL art. 47, the right to deletion).

What happens to each table tied to an account is declared here, table by table, the way the export
declares what it leaves out (``export.EXCLUDED``): a test walks the models and fails on a table tied
to an account that has no policy, so a new column's table cannot be forgotten.

- :class:`Delete`: the rows exist only to serve the resident (notifications, preferences, face
  features, sign-ins at third-party columns); they are deleted, children first.
- :class:`Retain`: a law or another party's record requires the rows (government service archives,
  accounting records of payments, banks' loan files, the access log, the audit chain). They are
  kept, tied to the anonymised account; ``withdraw`` stamps a column (consents, mandates and
  utility bindings end now); ``drafts`` erases what was never filed; ``busy`` names the states that
  are still in progress, which refuse the closure with the reason until they end.

The account row itself stays as an anonymous shell (so the retained rows still join): its phone,
name, ID number and password are erased, its phone and ID number lookup keys are freed (the same
phone may register again as a new account), it can no longer sign in, and every login is revoked.

The closure needs a fresh SMS code sent to the account's phone (single use: two closures at once
cannot both pass), is refused for staff accounts (an admin disables those), and is audited
(``accounts.closed``, counts only). It runs in one transaction: a failure leaves the account as it
was. A request that had passed authentication just before the closure began can still finish (its
writes are then retained or erased like any other row of the account).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import encrypt_str
from app_api.core.db import on_commit, utcnow
from app_api.core.errors import Conflict, Forbidden, NotFound
from app_api.platform import audit
from app_api.platform.accounts import export
from app_api.platform.accounts.models import Account, RefreshToken
from app_api.platform.accounts.principal import invalidate
from app_api.platform.accounts.service import check_code
from app_api.platform.accounts.tokens import revoke_family


@dataclass(frozen=True)
class Busy:
    """Rows whose ``column`` is in ``states`` are in progress: the closure waits for them to end."""

    column: str
    states: tuple[str, ...]
    label: str  # what the resident calls it, e.g. 政务服务申请


@dataclass(frozen=True)
class Drafts:
    """Rows never filed (``column`` in ``states``): their ``erase`` columns are set to NULL and
    ``values`` applied."""

    column: str
    states: tuple[str, ...]
    erase: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delete:
    reason: str


@dataclass(frozen=True)
class Retain:
    reason: str
    busy: Busy | None = None
    withdraw: str | None = None  # a timestamp column set to now where it is NULL
    drafts: Drafts | None = None


Policy = Delete | Retain

_ARCHIVE = "政务服务办件由承办部门依档案管理规定归档保存"
_ACCOUNTING = "支付与退款记录依《会计档案管理办法》保存"
_NOT_YOURS = "由工作人员维护的公共信息，不含您的个人信息"

POLICY: dict[str, Policy] = {
    "app_account": Retain(
        "账户保留为匿名记录：手机号、姓名、身份证号与密码已删除，仅用于关联依法保留的办件与支付记录"
    ),
    "app_refresh_token": Delete("登录凭证（注销时已全部吊销）"),
    "app_token_revocation": Retain("登录凭证的吊销记录，确保注销前签发的令牌不能再用"),
    "app_audit_event": Retain("审计链依法保存且不可篡改"),
    "app_outbox": Retain("系统内部任务队列，任务完成后自动清理"),
    "app_consent": Retain(
        "授权同意记录是此前处理您信息的合法性依据，予以保留；注销时全部撤回", withdraw="withdrawn_at"
    ),
    "app_mandate": Retain("代办授权记录是代办行为的依据，予以保留；注销时全部撤回", withdraw="withdrawn_at"),
    "app_agent_action": Retain("代办人员为您办理业务的记录，由代办点依规留存备查"),
    "app_agent_submission": Retain("代办人员为您提交的申请记录，由代办点依规留存备查"),
    "app_datahub_access": Retain("数据访问记录依《网络安全法》留存不少于六个月"),
    "app_datahub_certificate": Retain("电子证照由发证机关签发并保存在城市电子证照库，不属于本应用账户"),
    "app_datahub_person": Retain("人口信息由公安机关管理，不属于本应用账户"),
    "app_external_column": Retain(_NOT_YOURS),
    "app_external_column_grant": Delete("您对第三方栏目的授权"),
    "app_external_column_message": Delete("第三方栏目发给您的消息记录"),
    "app_external_column_template": Retain(_NOT_YOURS),
    "app_oidc_code": Delete("第三方栏目的登录凭证"),
    "app_oidc_ticket": Delete("第三方栏目的登录凭证"),
    "app_oidc_token": Delete("第三方栏目的登录凭证"),
    "app_notification": Delete("发给您的消息"),
    "app_notification_attempt": Delete("消息的发送记录"),
    "app_notification_dispatch": Delete("消息的发送记录"),
    "app_notify_preference": Delete("消息设置"),
    "app_notify_subscription": Delete("消息订阅"),
    "app_column_setting": Retain(_NOT_YOURS),
    "app_station": Retain(_NOT_YOURS),
    "gov_services_department": Retain(_NOT_YOURS),
    "gov_services_item_version": Retain(_NOT_YOURS),
    "notices_notice": Retain(_NOT_YOURS),
    "gov_services_application": Retain(
        _ARCHIVE,
        busy=Busy(
            "status",
            ("submitted", "accepted", "supplement", "awaiting_payment", "posted"),
            "政务服务申请",
        ),
        drafts=Drafts(
            "status", ("draft",), erase=("form_enc", "address_enc"), values={"status": "cancelled"}
        ),
    ),
    "gov_services_event": Retain(_ARCHIVE),
    "gov_services_upload": Retain(_ARCHIVE),
    "gov_services_rating": Retain(_ARCHIVE),
    "gov_services_warning": Retain(_ARCHIVE),
    "gov_services_waybill": Retain(_ARCHIVE),
    "gov_services_fee_payment": Retain(_ACCOUNTING, busy=Busy("status", ("open",), "事项缴费")),
    "gov_services_bundle_application": Retain(
        _ARCHIVE,
        busy=Busy("status", ("processing",), "“一件事”联办申请"),
        drafts=Drafts("status", ("draft",), erase=("form_enc", "address_enc")),
    ),
    "gov_services_bundle_event": Retain(_ARCHIVE),
    "gov_services_bundle_upload": Retain(_ARCHIVE),
    "identity_attempt": Retain("身份核验记录（不含人脸图像）作为安全日志留存"),
    "identity_face_profile": Delete("人脸特征与身份证照片（敏感个人信息）"),
    "loans_application": Retain(
        "贷款申请记录由贷款银行依金融监管规定留存",
        busy=Busy("status", ("submitted", "accepted", "info_requested", "approved"), "贷款申请"),
    ),
    "loans_application_event": Retain("贷款申请记录由贷款银行依金融监管规定留存"),
    "miniprogram_bridge_binding": Delete("小程序账号绑定"),
    "payments_order": Retain(_ACCOUNTING, busy=Busy("status", ("created", "paying"), "支付订单")),
    "payments_refund": Retain(_ACCOUNTING, busy=Busy("status", ("requested", "processing"), "退款")),
    "payments_event": Retain(_ACCOUNTING),
    "payments_recon_run": Retain(_NOT_YOURS),
    "payments_recon_item": Retain(_ACCOUNTING),
    "provident_fund_withdrawal": Retain(
        "公积金提取申请由公积金中心留存", busy=Busy("status", ("submitting",), "公积金提取申请")
    ),
    "utilities_binding": Retain("缴费记录关联的户号予以保留；注销时全部解绑", withdraw="unbound_at"),
    "utilities_bill": Retain("出账单位按户号提供的账单，不属于本应用账户"),
    "utilities_payment": Retain(_ACCOUNTING),
    "utilities_payment_item": Retain(_ACCOUNTING),
    "utilities_biller_notice": Retain(_ACCOUNTING),
}


def tied_tables() -> set[str]:
    """Every table tied to an account: the ones the export includes and the ones it leaves out."""
    return set(export.exported_tables()) | set(export.EXCLUDED)


class ClosureInProgress(Conflict):
    code = "accounts.closure_in_progress"
    title = "您有正在办理的业务，暂不能注销账户"


class ClosureNotForStaff(Forbidden):
    code = "accounts.closure_staff"
    title = "工作人员账户由管理员停用，不能自行注销"


class TableOutcome(BaseModel):
    table: str
    reason: str
    rows: int


class ClosureReceipt(BaseModel):
    """注销回执: what was deleted, and what is kept and why."""

    closed_at: str
    deleted: list[TableOutcome] = Field(description="已删除的数据")
    retained: list[TableOutcome] = Field(description="依法保留的数据及原因（已与您的身份信息脱钩）")
    withdrawn: dict[str, int] = Field(description="注销时撤回的授权与绑定")
    revoked_logins: int


def _where(name: str, account: Account, depth: int = 0) -> sa.ColumnElement[bool] | None:
    """Rows of ``name`` tied to ``account``: by an owner column, else through a parent's key."""
    table = SQLModel.metadata.tables[name]
    conds: list[sa.ColumnElement[bool]] = []
    for c in export.owner_columns(table):
        if c in export.ID_HASH_COLUMNS:
            if account.id_number_hash:
                conds.append(table.c[c] == account.id_number_hash)
        else:
            conds.append(table.c[c] == account.id)
    if not conds and depth < 4:
        for column in table.columns:
            for fk in column.foreign_keys:
                parent = fk.column.table
                if parent.name == export.ACCOUNT_TABLE or parent.name not in POLICY:
                    continue
                parent_where = _where(parent.name, account, depth + 1)
                if parent_where is not None:
                    conds.append(column.in_(sa.select(fk.column).where(parent_where)))
    return sa.or_(*conds) if conds else None


async def in_progress(session: AsyncSession, account: Account) -> list[str]:
    """What still runs for the account, in the resident's words (empty: nothing blocks closing)."""
    conn = await session.connection()
    reasons: list[str] = []
    for name, policy in sorted(POLICY.items()):
        if not isinstance(policy, Retain) or policy.busy is None or name not in SQLModel.metadata.tables:
            continue
        where = _where(name, account)
        if where is None:
            continue
        table = SQLModel.metadata.tables[name]
        busy = policy.busy
        n = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(where, table.c[busy.column].in_(busy.states))
            )
        ).scalar_one()
        if n:
            reasons.append(f"{busy.label}：{n} 件正在办理")
    return reasons


async def close(session: AsyncSession, *, account_id: str, code: str) -> ClosureReceipt:
    """Close the account, or refuse with the reason; one transaction (the caller's)."""
    account = await session.get(Account, account_id)
    if account is None or not account.is_active:
        raise NotFound("未找到账户")
    if account.is_staff:
        raise ClosureNotForStaff()
    reasons = await in_progress(session, account)
    if reasons:
        raise ClosureInProgress("；".join(reasons) + "。请在办结后再申请注销。", reasons=reasons)
    await check_code(phone=account.phone, code=code, session=session)

    families = (
        await session.exec(
            select(RefreshToken.family_id)
            .where(col(RefreshToken.account_id) == account.id, col(RefreshToken.revoked_at).is_(None))
            .distinct()
        )
    ).all()
    for family in families:
        await revoke_family(session, family, account.id, reason="account_closed")

    conn = await session.connection()
    now = utcnow()
    withdrawn: dict[str, int] = {}
    retained: list[TableOutcome] = []
    for name, policy in sorted(POLICY.items()):
        if not isinstance(policy, Retain) or name not in SQLModel.metadata.tables:
            continue
        table = SQLModel.metadata.tables[name]
        where = _where(name, account)
        if where is None:
            continue
        if policy.withdraw:
            result = await conn.execute(
                sa.update(table)
                .where(where, table.c[policy.withdraw].is_(None))
                .values({policy.withdraw: now})
            )
            if result.rowcount:
                withdrawn[name] = result.rowcount
        if policy.drafts:
            d = policy.drafts
            await conn.execute(
                sa.update(table)
                .where(where, table.c[d.column].in_(d.states))
                .values({**{c: None for c in d.erase}, **d.values})
            )
        if name != export.ACCOUNT_TABLE:
            n = (await conn.execute(sa.select(sa.func.count()).select_from(table).where(where))).scalar_one()
            if n:
                retained.append(TableOutcome(table=name, reason=policy.reason, rows=n))

    # Children before parents: a notification's attempts before the notification.
    deleted: list[TableOutcome] = []
    to_delete = {n for n, p in POLICY.items() if isinstance(p, Delete) and n in SQLModel.metadata.tables}
    wheres = {n: _where(n, account) for n in to_delete}
    for table in reversed(SQLModel.metadata.sorted_tables):
        where = wheres.get(table.name)
        if where is None:
            continue
        result = await conn.execute(sa.delete(table).where(where))
        if result.rowcount:
            policy = POLICY[table.name]
            deleted.append(TableOutcome(table=table.name, reason=policy.reason, rows=result.rowcount))

    account.phone_hash = closed_phone_hash(account.id)
    account.phone_enc = encrypt_str("", aad="phone")
    account.real_name_enc = None
    account.id_number_enc = None
    account.id_number_hash = None
    account.password_hash = None
    account.roles = []
    account.is_active = False
    session.add(account)
    await session.flush()

    receipt = ClosureReceipt(
        closed_at=now.isoformat(),
        deleted=sorted(deleted, key=lambda t: t.table),
        retained=sorted(retained, key=lambda t: t.table),
        withdrawn=withdrawn,
        revoked_logins=len(families),
    )
    await audit.record(
        session,
        action="accounts.closed",
        actor_id=account.id,
        subject_type="app_account",
        subject_id=account.id,
        data={
            "deleted": {t.table: t.rows for t in receipt.deleted},
            "retained": {t.table: t.rows for t in receipt.retained},
            "withdrawn": withdrawn,
            "revoked_logins": len(families),
        },
    )

    async def _forget() -> None:
        await invalidate(account_id)

    on_commit(session, _forget)
    return receipt


def closed_phone_hash(account_id: str) -> str:
    """The lookup key a closed account keeps: unique, and never the hash of a phone number."""
    return f"closed:{account_id}"


__all__ = [
    "POLICY",
    "Busy",
    "ClosureInProgress",
    "ClosureNotForStaff",
    "ClosureReceipt",
    "Delete",
    "Drafts",
    "Retain",
    "close",
    "in_progress",
    "tied_tables",
]
