"""Who read a resident's data: the actor of every read, its record, and the resident's view of it.

Every read of a resident's data through the gateway (registry pulls by ``Datahub``, certificate
shares opened by a grantee, and reads other packages declare with :func:`record_read`) leaves an
``app_datahub_access`` row naming the actor (the resident, an officer with their department, an
agent with their station and mandate, an institution's officer, a system job), the purpose and the
application, and an audit-chain entry (``datahub.registry_read`` / ``datahub.data_read``), so an
edited or deleted read shows in ``wojia audit verify``.

The resident's view names the actor by organisation and role in Chinese ("亳州市公安局 审核人员",
"谯城区XX村代办点 代办员"), never by the officer's name or phone, and never shows another
resident's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging, write_batch
from app_api.core.db import new_id, utcnow
from app_api.platform import audit
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.agents.models import Station
from app_api.platform.datahub.models import DataAccessLog
from app_api.platform.datahub.schemas import DataAccessOut

ActorKind = Literal["resident", "officer", "agent", "institution", "column", "system", "account"]

REGISTRY_READ = "datahub.registry_read"
DATA_READ = "datahub.data_read"

# What a resident reads for a purpose code; an unknown purpose is shown as its code.
PURPOSE_NAMES = {
    "gov_services.prefill": "政务服务一键申报调取信息",
    "gov_services.review": "政务服务办件审核",
    "gov_services.agent_filing": "代办员代为申请政务服务",
    "identity.real_name": "实名认证核验",
    "identity.face": "人脸识别核验（调取证件照）",
    "identity.l3": "高级实名认证",
    "identity.agent_attestation": "代办员现场核验身份",
    "datahub.certificate_share": "查看您共享的电子证照",
    "loans.apply": "贷款申请审核（按您的授权）",
    "provident_fund.withdraw": "公积金提取",
    "agents.mandate": "代办委托",
}
RECORD_NAMES = {
    "population": "人口信息",
    "legal_person": "法人信息",
    "certificate": "电子证照",
    "application": "办件材料",
    "account": "账户信息",
}
JOB_NAMES: dict[str, str] = {}


@dataclass(frozen=True)
class Actor:
    """Who reads: ``id`` is the account (None for a system job); ``org`` the department name
    (officers), the station id (agents) or the institution id (bank officers)."""

    kind: ActorKind
    id: str | None = None
    org: str | None = None
    mandate_id: str | None = None
    job: str | None = None

    @classmethod
    def resident(cls, account_id: str) -> Actor:
        return cls("resident", account_id)

    @classmethod
    def officer(cls, account_id: str, department: str | None) -> Actor:
        return cls("officer", account_id, department)

    @classmethod
    def agent(cls, agent_id: str, station_id: str | None, mandate_id: str | None) -> Actor:
        return cls("agent", agent_id, station_id, mandate_id)

    @classmethod
    def institution(cls, account_id: str, institution_id: str | None) -> Actor:
        return cls("institution", account_id, institution_id)

    @classmethod
    def column(cls, column_id: str, name: str) -> Actor:
        """A third-party column reading under the resident's sign-in consent (open platform)."""
        return cls("column", column_id, name)

    @classmethod
    def system(cls, job: str) -> Actor:
        """A background job (``job`` = its task name) reading without a person behind it."""
        return cls("system", None, None, None, job)

    @classmethod
    def of(cls, principal: Principal, *, subject_account_id: str | None = None) -> Actor:
        """The caller of a request: the resident themself, else by their staff role."""
        return _by_roles(
            principal.id,
            principal.roles,
            department=principal.department,
            station_id=principal.station_id,
            institution_id=principal.institution_id,
            subject_account_id=subject_account_id,
        )

    @property
    def accessor_id(self) -> str:
        return self.id if self.id is not None else f"job:{self.job}"[:32]


def _by_roles(
    account_id: str,
    roles: tuple[str, ...] | list[str],
    *,
    department: str | None,
    station_id: str | None,
    institution_id: str | None,
    subject_account_id: str | None,
) -> Actor:
    if account_id == subject_account_id:
        return Actor.resident(account_id)
    if "reviewer" in roles:
        return Actor.officer(account_id, department)
    if "agent" in roles:
        return Actor.agent(account_id, station_id, None)
    if "bank_officer" in roles:
        return Actor.institution(account_id, institution_id)
    # Another account with no staff role: shown without saying who (never another resident's data).
    return Actor("account", account_id)


async def resolve(session: AsyncSession, accessor_id: str, subject_account_id: str | None) -> Actor:
    """The actor behind ``accessor_id`` when a caller passed none: the resident when it is the subject,
    else by the account's staff role (department, station, institution)."""
    if accessor_id == subject_account_id:
        return Actor.resident(accessor_id)
    a = await session.get(Account, accessor_id)
    if a is None:
        return Actor("account", accessor_id)
    return _by_roles(
        a.id,
        list(a.roles),
        department=a.department,
        station_id=a.station_id,
        institution_id=a.institution_id,
        subject_account_id=subject_account_id,
    )


async def record_read(
    session: AsyncSession,
    *,
    actor: Actor,
    subject_account_id: str | None,
    subject_hash: str | None = None,
    record_type: str,
    purpose: str,
    consent_id: str | None = None,
    fields: list[str] | None = None,
    application_ref: str | None = None,
    found: bool = True,
    registry: bool = False,
    audited: bool = True,
    flush: bool = True,
) -> str:
    """Record one read of a resident's data (in the caller's transaction): the access row the
    resident sees and its audit-chain entry. ``subject_hash`` is the ID number's lookup hash
    (``service.id_hash``) for a registry record; a read of our own records (an application, the
    account) leaves it out and is keyed by the account id.

    ``application_ref`` is the application the read serves, as the resident knows it (the 办件编号).
    ``audited=False`` only for a caller that writes its own audit entry for the same read.
    ``flush=False`` leaves the row to the session's next flush (several reads' rows in one INSERT).
    In a unit of work that defers its writes (``write_batch``) the row is queued for the commit.
    Returns the row's id.
    """
    row_id = new_id()
    values: dict[str, Any] = {
        "id": row_id,
        "accessor_id": actor.accessor_id,
        "actor_kind": actor.kind,
        "actor_org": actor.org,
        "mandate_id": actor.mandate_id,
        "job": actor.job,
        "application_ref": application_ref,
        "subject_account_id": subject_account_id,
        "subject_hash": subject_hash or subject_account_id or "",
        "record_type": record_type,
        "purpose": purpose,
        "consent_id": consent_id,
        "fields": list(fields or []),
        "found": found,
        "at": utcnow(),
    }
    # Queued as a plain row (no ORM object to build) when the unit of work defers its writes.
    if not write_batch.queue(session, _TABLE, [values]):
        session.add(DataAccessLog(**values))
        if flush:
            await session.flush()
    if audited:
        await audit.record(
            session,
            action=REGISTRY_READ if registry else DATA_READ,
            actor_id=actor.id or actor.accessor_id,
            subject_type="datahub_access",
            subject_id=row_id,
            data={
                "subject_account_id": subject_account_id,
                "record_type": record_type,
                "purpose": purpose,
                "consent_id": consent_id,
                "fields": values["fields"],
                "found": found,
                "actor_kind": actor.kind,
                "actor_org": actor.org,
                "mandate_id": actor.mandate_id,
                "job": actor.job,
                "application_ref": application_ref,
            },
        )
    return row_id


_TABLE = DataAccessLog.__table__  # type: ignore[attr-defined]


async def _station_names(session: AsyncSession, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = (await session.exec(select(Station.id, Station.name).where(col(Station.id).in_(ids)))).all()
    return {i: n for i, n in rows}


def describe(row: DataAccessLog, account_id: str, stations: dict[str, str]) -> str:
    """The actor in Chinese, by organisation and role only."""
    kind = row.actor_kind
    if kind is None:
        # Reads recorded before actors were: only "you or not" is known.
        return "本人" if row.accessor_id == account_id else "其他机构或人员"
    if kind == "resident" and row.accessor_id == account_id:
        text = "本人"
    elif kind == "officer":
        text = f"{row.actor_org or '政府部门'} 审核人员"
    elif kind == "agent":
        station = stations.get(row.actor_org or "") or "代办点"
        text = f"{station} 代办员" + ("（依您的代办委托）" if row.mandate_id else "")
    elif kind == "institution":
        text = f"金融机构（{row.actor_org or '未登记'}） 工作人员"
    elif kind == "column":
        text = f"第三方栏目“{row.actor_org or '未登记'}”（经您授权）"
    elif kind == "system":
        text = f"系统自动处理（{JOB_NAMES.get(row.job or '', row.job or '后台任务')}）"
    else:
        text = "其他用户"
    if row.application_ref:
        text += f"（办件 {row.application_ref}）"
    return text


async def reads_of(
    session: AsyncSession, account_id: str, *, cursor: str | None, limit: int
) -> tuple[list[DataAccessOut], str | None]:
    """Who read this resident's records, newest first after ``cursor``, and the next page's cursor."""
    q = paging.after(
        select(DataAccessLog).where(DataAccessLog.subject_account_id == account_id),
        at_column=col(DataAccessLog.at),
        id_column=col(DataAccessLog.id),
        cursor=cursor,
        limit=limit,
    )
    rows, next_cursor = paging.page((await session.exec(q)).all(), limit=limit, key=lambda r: (r.at, r.id))
    stations = await _station_names(
        session, {r.actor_org for r in rows if r.actor_kind == "agent" and r.actor_org}
    )
    out = [
        DataAccessOut(
            at=r.at,
            record_type=r.record_type,
            record_name=RECORD_NAMES.get(r.record_type, r.record_type),
            purpose=r.purpose,
            purpose_name=PURPOSE_NAMES.get(r.purpose, r.purpose),
            consent_id=r.consent_id,
            fields=r.fields,
            by_self=r.accessor_id == account_id,
            found=r.found,
            actor_kind=_public_kind(r, account_id),
            actor=describe(r, account_id, stations),
            department=r.actor_org if r.actor_kind == "officer" else None,
            station=stations.get(r.actor_org or "") if r.actor_kind == "agent" else None,
            mandate_id=r.mandate_id,
            application_ref=r.application_ref,
        )
        for r in rows
    ]
    return out, next_cursor


def _public_kind(r: DataAccessLog, account_id: str) -> str:
    if r.actor_kind is None:
        return "resident" if r.accessor_id == account_id else "unknown"
    if r.actor_kind == "resident" and r.accessor_id != account_id:
        return "account"
    return r.actor_kind
