"""Mandates: a resident's recorded consent that an agent acts for them, within a scope, for a time.

Given by an SMS code sent to the resident's own phone, or in person with the agent's attestation of
the ID check; withdrawn by either side. Every action under a mandate checks it first (``act_for``,
``require_mandate``).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.core.clock import CHINA_TZ
from app_api.core.crypto import mask_id_number, mask_name, mask_phone
from app_api.core.db import utcnow
from app_api.core.errors import ValidationFailed
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings
from app_api.platform import notify, sms
from app_api.platform.accounts import service as accounts
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.agents import errors, messages
from app_api.platform.agents.actions import record_action
from app_api.platform.agents.models import SCOPES, Mandate, Station
from app_api.platform.agents.schemas import (
    AgentsMandate,
    MandateCodeSent,
    Person,
    ResidentsMandate,
    StationRef,
)
from app_api.platform.agents.stations import agent_station
from app_api.platform.consent import service as consent
from app_api.platform.consent.models import Consent
from app_api.platform.datahub.citizen_id import problem as id_problem
from app_api.platform.datahub.service import id_hash

MANDATE_PURPOSE = "agents.mandate"
CODE_TTL_S = 600
CODE_COOLDOWN_S = 60
MAX_WRONG = 5
MAX_DAYS = 365
MANDATE_CODE = "agents.mandate_code"
sms.declare(
    MANDATE_CODE,
    "$station代办员申请代您办理：$scopes，有效期$days天。授权验证码$code，$minutes分钟内有效。"
    "同意请将验证码告知代办员；如非您本人申请，请勿告知他人。",
)


def _check_scope(scopes: list[str], items: list[str], days: int) -> tuple[list[str], list[str]]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValidationFailed("授权范围有误", unknown=unknown, allowed=sorted(SCOPES))
    if not 1 <= days <= MAX_DAYS:
        raise ValidationFailed(f"授权有效期应为1至{MAX_DAYS}天", days=days)
    return sorted(set(scopes)), sorted({i.strip() for i in items if i.strip()})


def _code_hash(request_id: str, code: str) -> str:
    key = get_settings().secret_key.get_secret_value().encode()
    return hmac.new(key, f"mandate:{request_id}:{code}".encode(), "sha256").hexdigest()


def _scope_text(scopes: list[str]) -> str:
    return "、".join(SCOPES[s] for s in scopes)


async def request_sms_mandate(
    session: AsyncSession, *, agent: Principal, phone: str, scopes: list[str], items: list[str], days: int
) -> MandateCodeSent:
    """Send the resident a code that says who asks for what; the agent types it back to confirm."""
    station = await agent_station(session, agent)
    scopes, items = _check_scope(scopes, items, days)
    resident = await accounts.find_by_phone(session, phone)
    if resident is not None and resident.is_staff:
        raise errors.ResidentIsStaff()
    r = await get_redis()
    if not await r.set(f"agents:mcool:{phone}", b"1", ex=CODE_COOLDOWN_S, nx=True):
        raise errors.ConsentCodeCooldown(retry_after=await r.ttl(f"agents:mcool:{phone}"))
    request_id = secrets.token_urlsafe(16)
    code = f"{secrets.randbelow(10**6):06d}"
    payload = {
        "agent_id": agent.id,
        "station_id": station.id,
        "phone": phone,
        "scopes": scopes,
        "items": items,
        "days": days,
        "code": _code_hash(request_id, code),
    }
    await r.set(f"agents:mreq:{request_id}", json.dumps(payload), ex=CODE_TTL_S)
    params = {
        "station": station.name,
        "scopes": _scope_text(scopes),
        "days": days,
        "code": code,
        "minutes": CODE_TTL_S // 60,
    }
    try:
        await sms.get_sms().send(phone, MANDATE_CODE, params)
    except sms.SmsFailed:
        await r.delete(f"agents:mreq:{request_id}", f"agents:mcool:{phone}")
        raise
    await record_action(
        session,
        agent_id=agent.id,
        station_id=station.id,
        resident_id=resident.id if resident else None,
        mandate=None,
        action="mandate_requested",
        data={"phone": mask_phone(phone), "scopes": scopes, "items": items, "days": days},
    )
    return MandateCodeSent(request_id=request_id, expires_in=CODE_TTL_S, phone=mask_phone(phone))


async def confirm_sms_mandate(
    session: AsyncSession, *, agent: Principal, request_id: str, code: str
) -> Mandate:
    station = await agent_station(session, agent)
    r = await get_redis()
    key = f"agents:mreq:{request_id}"
    raw = await r.get(key)
    if raw is None:
        raise errors.ConsentCodeInvalid("授权验证码已失效，请重新发送")
    req = json.loads(raw)
    if req["agent_id"] != agent.id:
        raise errors.ConsentCodeInvalid("授权验证码已失效，请重新发送")
    if not hmac.compare_digest(req["code"], _code_hash(request_id, code)):
        wrong = await r.incr(f"{key}:wrong")
        await r.expire(f"{key}:wrong", CODE_TTL_S)
        if wrong >= MAX_WRONG:
            await r.delete(key, f"{key}:wrong")
            raise errors.ConsentCodeInvalid("验证码错误次数过多，请重新发送")
        raise errors.ConsentCodeInvalid(
            f"验证码错误，还可尝试{MAX_WRONG - wrong}次", tries_left=MAX_WRONG - wrong
        )
    # DEL decides who used the code first: one code makes one mandate.
    if await r.delete(key) != 1:
        raise errors.ConsentCodeInvalid("授权验证码已失效，请重新发送")
    resident, _ = await accounts.get_or_create_resident(session, phone=req["phone"])
    if resident.is_staff:
        raise errors.ResidentIsStaff()
    return await _create_mandate(
        session,
        agent=agent,
        station=station,
        resident=resident,
        scopes=req["scopes"],
        items=req["items"],
        days=req["days"],
        method="sms",
        attestation={},
    )


async def record_in_person_mandate(
    session: AsyncSession,
    *,
    agent: Principal,
    phone: str,
    scopes: list[str],
    items: list[str],
    days: int,
    id_number: str,
    document: str,
    statement: str,
) -> Mandate:
    """The agent checked the resident's ID card in person and attests it."""
    station = await agent_station(session, agent)
    scopes, items = _check_scope(scopes, items, days)
    id_number = id_number.strip().upper()
    reason = id_problem(id_number)
    if reason:
        raise ValidationFailed(f"身份证号码有误：{reason}", field="id_number")
    resident, _ = await accounts.get_or_create_resident(session, phone=phone)
    if resident.is_staff:
        raise errors.ResidentIsStaff()
    if resident.id_number_hash and resident.id_number_hash != id_hash(id_number):
        raise errors.IdentityMismatch()
    attestation = {
        "document": document,
        "id_number_hash": id_hash(id_number),
        "id_number_masked": mask_id_number(id_number),
        "statement": statement,
        "attested_by": agent.id,
        "attested_at": utcnow().isoformat(),
        "matched_record": bool(resident.id_number_hash),
    }
    return await _create_mandate(
        session,
        agent=agent,
        station=station,
        resident=resident,
        scopes=scopes,
        items=items,
        days=days,
        method="in_person",
        attestation=attestation,
    )


async def _create_mandate(
    session: AsyncSession,
    *,
    agent: Principal,
    station: Station,
    resident: Account,
    scopes: list[str],
    items: list[str],
    days: int,
    method: str,
    attestation: dict[str, Any],
) -> Mandate:
    ttl = dt.timedelta(days=days)
    items_text = f"（限{'、'.join(items)}）" if items else ""
    c = await consent.grant(
        session,
        account_id=resident.id,
        purpose=MANDATE_PURPOSE,
        scopes=scopes,
        text=f"同意{station.name}代办员代为{_scope_text(scopes)}{items_text}",
        grantee=f"agent:{agent.id}",
        granted_via=method,
        ttl=ttl,
        actor_id=agent.id,
    )
    assert c.expires_at is not None
    m = Mandate(
        resident_id=resident.id,
        agent_id=agent.id,
        station_id=station.id,
        scopes=scopes,
        items=items,
        method=method,
        attestation=attestation,
        consent_id=c.id,
        expires_at=c.expires_at,
    )
    session.add(m)
    await session.flush()
    await record_action(
        session,
        agent_id=agent.id,
        station_id=station.id,
        resident_id=resident.id,
        mandate=m,
        action="mandate_created",
        subject_id=m.id,
        data={"method": method, "scopes": scopes, "items": items, "days": days},
    )
    # Told at once, whatever the quiet hours: a mandate the resident did not give must be noticed.
    await notify.send(
        session,
        account_id=resident.id,
        template=messages.MANDATE_CREATED,
        params={
            "station": station.name,
            "scopes": _scope_text(scopes),
            "until": m.expires_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d"),
        },
        urgent=method == "in_person",
    )
    return m


async def _consent_of(session: AsyncSession, m: Mandate) -> Consent | None:
    return await session.get(Consent, m.consent_id)


async def mandate_state(session: AsyncSession, m: Mandate, now: dt.datetime | None = None) -> str:
    """valid, withdrawn or expired (a consent withdrawn in the resident's consent list counts)."""
    now = now or utcnow()
    c = await _consent_of(session, m)
    if m.withdrawn_at is not None or c is None or c.withdrawn_at is not None:
        return "withdrawn"
    if m.expires_at <= now or (c.expires_at is not None and c.expires_at <= now):
        return "expired"
    return "valid"


def covers(m: Mandate, scope: str, item_code: str | None) -> bool:
    return scope in m.scopes and (item_code is None or not m.items or item_code in m.items)


async def require_mandate(
    session: AsyncSession,
    *,
    agent: Principal,
    resident_id: str,
    scope: str,
    item_code: str | None = None,
    mandate_id: str | None = None,
) -> tuple[Mandate, Station]:
    """The agent's valid mandate from this resident covering ``scope`` (and the item), or a clear refusal."""
    station = await agent_station(session, agent)
    q = select(Mandate).where(
        Mandate.resident_id == resident_id, Mandate.agent_id == agent.id, Mandate.station_id == station.id
    )
    if mandate_id:
        q = q.where(Mandate.id == mandate_id)
    found = list((await session.exec(q.order_by(col(Mandate.created_at).desc()))).all())
    if not found:
        raise errors.MandateRequired(resident_id=resident_id)
    states = [(m, await mandate_state(session, m)) for m in found]
    valid = [m for m, st in states if st == "valid"]
    for m in valid:
        if covers(m, scope, item_code):
            return m, station
    if valid:
        raise errors.OutOfScope(
            f"授权范围不包含：{SCOPES.get(scope, scope)}" + (f"（事项 {item_code}）" if item_code else ""),
            scope=scope,
            item_code=item_code,
        )
    latest_state = states[0][1]
    if latest_state == "withdrawn":
        raise errors.MandateWithdrawn(mandate_id=states[0][0].id)
    raise errors.MandateExpired(mandate_id=states[0][0].id)


async def withdraw_mandate(session: AsyncSession, *, mandate_id: str, by: Principal) -> Mandate:
    """The resident, or the agent holding it, ends a mandate; its consent is withdrawn with it."""
    m = await session.get(Mandate, mandate_id)
    if m is None or by.id not in (m.resident_id, m.agent_id):
        raise errors.MandateNotFound()
    if m.withdrawn_at is None:
        m.withdrawn_at, m.withdrawn_by = utcnow(), by.id
        session.add(m)
        c = await _consent_of(session, m)
        if c is not None and c.withdrawn_at is None:
            await consent.withdraw(session, account_id=m.resident_id, consent_id=c.id)
        await session.flush()
        station = await session.get(Station, m.station_id)
        await record_action(
            session,
            agent_id=m.agent_id,
            station_id=m.station_id,
            resident_id=m.resident_id,
            mandate=m,
            action="mandate_withdrawn",
            subject_id=m.id,
            data={"by": "resident" if by.id == m.resident_id else "agent"},
        )
        if by.id == m.agent_id:
            await notify.send(
                session,
                account_id=m.resident_id,
                template=messages.MANDATE_WITHDRAWN,
                params={"station": station.name if station else ""},
            )
    return m


async def mandates_of_resident(
    session: AsyncSession, resident_id: str, *, cursor: str | None, limit: int
) -> tuple[list[Mandate], str | None]:
    """Mandates the resident gave, newest first, after ``cursor``, and the next page's cursor."""
    return await _mandates_page(session, col(Mandate.resident_id) == resident_id, cursor=cursor, limit=limit)


async def mandates_of_agent(
    session: AsyncSession, agent_id: str, *, cursor: str | None, limit: int
) -> tuple[list[Mandate], str | None]:
    """Mandates the agent holds, newest first, after ``cursor``, and the next page's cursor."""
    return await _mandates_page(session, col(Mandate.agent_id) == agent_id, cursor=cursor, limit=limit)


async def _mandates_page(
    session: AsyncSession, whose: Any, *, cursor: str | None, limit: int
) -> tuple[list[Mandate], str | None]:
    q = paging.after(
        select(Mandate).where(whose),
        at_column=col(Mandate.created_at),
        id_column=col(Mandate.id),
        cursor=cursor,
        limit=limit,
    )
    return paging.page((await session.exec(q)).all(), limit=limit, key=lambda m: (m.created_at, m.id))


async def withdraw_own_mandate(session: AsyncSession, *, mandate_id: str, resident: Principal) -> Mandate:
    """The resident withdraws a mandate they gave (one of someone else's is not found)."""
    found = await session.get(Mandate, mandate_id)
    if found is None or found.resident_id != resident.id:
        raise errors.MandateNotFound()
    return await withdraw_mandate(session, mandate_id=mandate_id, by=resident)


async def _parts(session: AsyncSession, m: Mandate, other_id: str, *, with_id: bool) -> dict[str, Any]:
    station = await session.get(Station, m.station_id)
    other = await session.get(Account, other_id)
    person: Person = {}
    if other is not None:
        name = other.real_name
        person = {
            "id": other.id if with_id else None,
            "name": mask_name(name) if name else None,
            "phone": mask_phone(other.phone),
        }
    return {
        "id": m.id,
        "person": person,
        "station": StationRef(id=m.station_id, name=station.name if station else None),
        "scopes": m.scopes,
        "scope_labels": [SCOPES[s] for s in m.scopes],
        "items": m.items,
        "method": m.method,
        "created_at": m.created_at,
        "expires_at": m.expires_at,
        "withdrawn_at": m.withdrawn_at,
        "state": await mandate_state(session, m),
    }


async def for_agent(session: AsyncSession, m: Mandate) -> AgentsMandate:
    """The mandate as its agent sees it: the resident's id, masked name and phone."""
    parts = await _parts(session, m, m.resident_id, with_id=True)
    return AgentsMandate(resident=parts.pop("person"), **parts)


async def for_resident(session: AsyncSession, m: Mandate) -> ResidentsMandate:
    """The mandate as the resident sees it: the agent's masked name and phone."""
    parts = await _parts(session, m, m.agent_id, with_id=False)
    return ResidentsMandate(agent=parts.pop("person"), **parts)


async def act_for(
    session: AsyncSession,
    *,
    agent: Principal,
    resident_id: str,
    scope: str,
    action: str,
    mandate_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> tuple[Mandate, Station]:
    """Check the mandate for one action and record it (agent, station, mandate)."""
    m, station = await require_mandate(
        session, agent=agent, resident_id=resident_id, scope=scope, mandate_id=mandate_id
    )
    await record_action(
        session,
        agent_id=agent.id,
        station_id=station.id,
        resident_id=resident_id,
        mandate=m,
        action=action,
        data=data,
    )
    return m, station


# ---------------------------------------------------------------------------------------------
