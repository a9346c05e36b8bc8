"""Stations, agents, mandates and agents' submissions."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import CHINA_TZ
from app_api.core.crypto import mask_id_number, mask_name, mask_phone
from app_api.core.db import savepoint, utcnow
from app_api.core.errors import AppError, ValidationFailed
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings
from app_api.platform import audit, notify
from app_api.platform.accounts import service as accounts
from app_api.platform.accounts.models import Account, Role
from app_api.platform.accounts.principal import Principal, invalidate
from app_api.platform.agents import errors, filing
from app_api.platform.agents.models import SCOPES, AgentAction, Mandate, Station, Submission
from app_api.platform.agents.schemas import SubmissionIn
from app_api.platform.consent import service as consent
from app_api.platform.consent.models import Consent
from app_api.platform.datahub.citizen_id import problem as id_problem
from app_api.platform.datahub.service import id_hash
from app_api.platform.sms import get_sms

MANDATE_PURPOSE = "agents.mandate"
CODE_TTL_S = 600
CODE_COOLDOWN_S = 60
MAX_WRONG = 5
MAX_DAYS = 365
BATCH_MAX = 100

notify.register_template(
    "agents.mandate_created",
    "$station代办员已登记您的代办授权（$scopes），有效期至$until。如非您本人同意，请在“我的-授权管理”中撤回。",
    wechat_fields={"thing1": "$station", "thing2": "$scopes", "time3": "$until"},
)
notify.register_template(
    "agents.application_filed",
    "$station代办员已为您提交“$item”申请，申请编号$number。",
    wechat_fields={"thing1": "$item", "character_string2": "$number", "thing3": "$station"},
)
notify.register_template(
    "agents.mandate_withdrawn",
    "您给$station代办员的代办授权已撤回，代办员不能再为您办理事项。",
)


# ---------------------------------------------------------------------------------------------
# Stations and agents


async def list_stations(
    session: AsyncSession, *, city: str | None = None, kind: str | None = None
) -> list[Station]:
    q = select(Station).where(col(Station.active).is_(True))
    if city:
        q = q.where(col(Station.city).contains(city.strip()))
    if kind:
        q = q.where(Station.kind == kind)
    return list((await session.exec(q.order_by(col(Station.city), col(Station.code)))).all())


async def get_station(session: AsyncSession, station_id: str) -> Station:
    st = await session.get(Station, station_id)
    if st is None:
        raise errors.StationNotFound()
    return st


async def agent_station(session: AsyncSession, agent: Principal) -> Station:
    if not agent.has(Role.agent.value) or not agent.station_id:
        raise errors.NotAssigned()
    st = await session.get(Station, agent.station_id)
    if st is None or not st.active:
        raise errors.NotAssigned("您所在的代办点已停用或不存在，请联系管理员")
    return st


async def assign_agent(
    session: AsyncSession, *, station: Station, phone: str, password: str, actor_id: str
) -> Account:
    existing = await accounts.find_by_phone(session, phone)
    roles = sorted({*(existing.roles if existing else []), Role.agent.value} - {Role.resident.value})
    account = await accounts.create_staff(
        session, phone=phone, password=password, roles=roles, actor_id=actor_id, station_id=station.id
    )
    if account.station_id != station.id:  # create_staff keeps an old station; moving is explicit here
        account.station_id = station.id
        session.add(account)
        await session.flush()
        await invalidate(account.id)
    await audit.record(
        session,
        action="agents.agent_assigned",
        actor_id=actor_id,
        subject_type="account",
        subject_id=account.id,
        data={"station_id": station.id},
    )
    return account


# ---------------------------------------------------------------------------------------------
# Mandates


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
) -> dict[str, Any]:
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
    city = get_settings().city_name
    await get_sms().send(
        phone,
        f"【我家{city}】{station.name}代办员申请代您办理：{_scope_text(scopes)}，有效期{days}天。"
        f"授权验证码{code}，{CODE_TTL_S // 60}分钟内有效。"
        "同意请将验证码告知代办员；如非您本人申请，请勿告知他人。",
        template="agents_mandate_code",
        params=[station.name, code],
    )
    await record_action(
        session,
        agent_id=agent.id,
        station_id=station.id,
        resident_id=resident.id if resident else None,
        mandate=None,
        action="mandate_requested",
        data={"phone": mask_phone(phone), "scopes": scopes, "items": items, "days": days},
    )
    return {"request_id": request_id, "expires_in": CODE_TTL_S, "phone": mask_phone(phone)}


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
        template="agents.mandate_created",
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
                template="agents.mandate_withdrawn",
                params={"station": station.name if station else ""},
            )
    return m


async def mandates_of_resident(session: AsyncSession, resident_id: str) -> list[Mandate]:
    q = select(Mandate).where(Mandate.resident_id == resident_id).order_by(col(Mandate.created_at).desc())
    return list((await session.exec(q)).all())


async def mandates_of_agent(session: AsyncSession, agent_id: str) -> list[Mandate]:
    q = select(Mandate).where(Mandate.agent_id == agent_id).order_by(col(Mandate.created_at).desc())
    return list((await session.exec(q)).all())


async def mandate_out(session: AsyncSession, m: Mandate, *, for_agent: bool) -> dict[str, Any]:
    station = await session.get(Station, m.station_id)
    other = await session.get(Account, m.resident_id if for_agent else m.agent_id)
    person: dict[str, Any] = {}
    if other is not None:
        name = other.real_name
        person = {
            "id": other.id if for_agent else None,
            "name": mask_name(name) if name else None,
            "phone": mask_phone(other.phone),
        }
    return {
        "id": m.id,
        "resident" if for_agent else "agent": person,
        "station": {"id": m.station_id, "name": station.name if station else None},
        "scopes": m.scopes,
        "scope_labels": [SCOPES[s] for s in m.scopes],
        "items": m.items,
        "method": m.method,
        "created_at": m.created_at,
        "expires_at": m.expires_at,
        "withdrawn_at": m.withdrawn_at,
        "state": await mandate_state(session, m),
    }


# ---------------------------------------------------------------------------------------------
# Actions


async def record_action(
    session: AsyncSession,
    *,
    agent_id: str,
    station_id: str,
    resident_id: str | None,
    mandate: Mandate | None,
    action: str,
    subject_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    if resident_id is not None:
        session.add(
            AgentAction(
                agent_id=agent_id,
                station_id=station_id,
                resident_id=resident_id,
                mandate_id=mandate.id if mandate else None,
                action=action,
                subject_id=subject_id,
                data=data or {},
            )
        )
    await audit.record(
        session,
        action=f"agents.{action}",
        actor_id=agent_id,
        subject_type="account",
        subject_id=resident_id,
        data={"station_id": station_id, "mandate_id": mandate.id if mandate else None, **(data or {})},
    )


async def actions_for_resident(
    session: AsyncSession, resident_id: str, limit: int = 100
) -> list[AgentAction]:
    q = (
        select(AgentAction)
        .where(AgentAction.resident_id == resident_id)
        .order_by(col(AgentAction.at).desc())
        .limit(limit)
    )
    return list((await session.exec(q)).all())


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
# Submissions

_ITEM = TypeAdapter(SubmissionIn)


async def submit(session: AsyncSession, *, agent: Principal, item: SubmissionIn) -> dict[str, Any]:
    """File one submission for a resident; the same client key gives back the first result."""
    q = select(Submission).where(Submission.agent_id == agent.id, Submission.client_key == item.client_key)
    existing = (await session.exec(q)).first()
    if existing is not None:
        if existing.resident_id != item.resident_id or existing.item_code != item.item_code:
            raise errors.ClientKeyReused(client_key=item.client_key)
        return {"status": "duplicate", "application": existing.result, "submission_id": existing.id}
    mandate, station = await require_mandate(
        session,
        agent=agent,
        resident_id=item.resident_id,
        scope="apply",
        item_code=item.item_code,
        mandate_id=item.mandate_id,
    )
    if item.pickup and "pickup" not in mandate.scopes:
        raise errors.OutOfScope("授权范围不包含：办理结果寄送至代办点代领", scope="pickup")
    delivery = (
        {
            "method": "station",
            "station_id": station.id,
            "station_name": station.name,
            "address": station.address,
        }
        if item.pickup
        else None
    )
    result = await filing.file_on_behalf(
        session,
        resident_id=item.resident_id,
        agent_id=agent.id,
        station_id=station.id,
        mandate_id=mandate.id,
        item_code=item.item_code,
        form=item.form,
        client_key=item.client_key,
        delivery=delivery,
    )
    sub = Submission(
        agent_id=agent.id,
        client_key=item.client_key,
        station_id=station.id,
        resident_id=item.resident_id,
        mandate_id=mandate.id,
        item_code=item.item_code,
        pickup=item.pickup,
        result=result,
    )
    session.add(sub)
    await session.flush()
    await record_action(
        session,
        agent_id=agent.id,
        station_id=station.id,
        resident_id=item.resident_id,
        mandate=mandate,
        action="application_filed",
        subject_id=str(result.get("id")) if result.get("id") else None,
        data={"item_code": item.item_code, "client_key": item.client_key, "pickup": item.pickup},
    )
    await notify.send(
        session,
        account_id=item.resident_id,
        template="agents.application_filed",
        params={
            "station": station.name,
            "item": str(result.get("item_name") or result.get("item") or item.item_code),
            "number": str(result.get("number") or ""),
        },
    )
    return {"status": "created", "application": result, "submission_id": sub.id}


def _problem(e: AppError) -> dict[str, Any]:
    return {"code": e.code, "title": e.title, "detail": e.detail, **e.extra}


async def submit_one_isolated(
    session: AsyncSession, *, agent: Principal, item: SubmissionIn
) -> dict[str, Any]:
    """One submission in its own savepoint: a refused one leaves nothing behind, the others stand."""
    try:
        async with savepoint(session):
            return await submit(session, agent=agent, item=item)
    except sa.exc.IntegrityError:
        # The same client key filed concurrently by a resent batch: the first one's result stands.
        q = select(Submission).where(
            Submission.agent_id == agent.id, Submission.client_key == item.client_key
        )
        existing = (await session.exec(q)).first()
        if existing is None:
            raise
        return {"status": "duplicate", "application": existing.result, "submission_id": existing.id}
    except AppError as e:
        return {"status": "failed", "error": _problem(e)}  # savepoint() dropped its audit entries


async def lock_for_writing(session: AsyncSession, agent_id: str) -> None:
    """Serialise one agent's submissions, before the first read.

    A device resends a batch whose answer it never got, sometimes while the first is still running:
    the second waits for the first to commit and then finds every client key already filed.
    PostgreSQL: a transaction-scoped advisory lock per agent. SQLite: the database write lock, taken
    up front, because a deferred SQLite transaction that reads and then writes after another
    connection (a job) committed fails at once with "database is locked" instead of waiting.
    """
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        await session.exec(sa.text("UPDATE app_station SET code = code WHERE 1 = 0"))  # type: ignore[call-overload]
    elif bind.dialect.name == "postgresql":
        await session.exec(  # type: ignore[call-overload]
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            params={"key": f"agents.submit:{agent_id}"},
        )


async def submit_batch(session: AsyncSession, *, agent: Principal, items: list[Any]) -> dict[str, Any]:
    """Submissions queued offline: each item is checked and filed on its own, with its own result."""
    await lock_for_writing(session, agent.id)
    await agent_station(session, agent)
    if len(items) > BATCH_MAX:
        raise ValidationFailed(f"每批最多提交{BATCH_MAX}条", max_items=BATCH_MAX)
    results: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, raw in enumerate(items):
        key = raw.get("client_key") if isinstance(raw, dict) else None
        try:
            item = _ITEM.validate_python(raw)
        except ValidationError as e:
            fields = [{"loc": [str(x) for x in err["loc"]], "msg": err["msg"]} for err in e.errors()]
            results.append(
                {
                    "index": index,
                    "client_key": key,
                    "status": "failed",
                    "error": {
                        "code": "app.validation_failed",
                        "title": "提交的信息有误，请检查后重试",
                        "errors": fields,
                    },
                }
            )
            continue
        if item.client_key in seen:
            results.append(
                {
                    "index": index,
                    "client_key": item.client_key,
                    "status": "failed",
                    "error": _problem(
                        errors.ClientKeyReused("同一批次中提交编号重复", client_key=item.client_key)
                    ),
                }
            )
            continue
        seen.add(item.client_key)
        out = await submit_one_isolated(session, agent=agent, item=item)
        results.append({"index": index, "client_key": item.client_key, **out})
    summary = {s: sum(1 for r in results if r["status"] == s) for s in ("created", "duplicate", "failed")}
    return {"results": results, "summary": summary}


async def set_elderly_mode(
    session: AsyncSession, *, agent: Principal, resident_id: str, enabled: bool
) -> Account:
    """An agent switches elderly mode on (or off) for a resident, within a mandate's "settings" scope."""
    await act_for(
        session,
        agent=agent,
        resident_id=resident_id,
        scope="settings",
        action="elderly_mode_set",
        data={"enabled": enabled},
    )
    account = await session.get(Account, resident_id)
    if account is None:
        raise errors.ResidentNotFound()
    account.elderly_mode = enabled
    session.add(account)
    await session.flush()
    await invalidate(account.id)
    return account
