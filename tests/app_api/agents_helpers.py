"""Shared set-up of the agents tests: stations, agents, residents, SMS mandates, submissions."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import select

from app_api.core.db import session_scope, sessionmaker
from tests.citizens import new_id_number
from tests.conftest import LoginFn, new_phone, set_level

API = "/api/v1"
ITEM = "BZ-MZ-001"  # 老年人优待证办理 (L2)
OTHER_ITEM = "BZ-MZ-002"  # 高龄津贴申领 (L2)


@pytest.fixture(scope="module", autouse=True)
async def gov_catalogue(app: Any) -> None:
    """The government-services column files agents' applications (its ``file_on_behalf``)."""
    from columns.gov_services.seed import seed

    async with session_scope() as s:
        await seed(s)


@dataclass
class Station:
    id: str
    name: str


@dataclass
class AgentCtx:
    headers: dict[str, str]
    id: str
    station: Station


async def admin(login: LoginFn) -> dict[str, str]:
    return await login(roles=["admin"])


async def make_station(
    client: httpx.AsyncClient, login: LoginFn, city: str = "常熟", kind: str = "liaison"
) -> Station:
    code = "ST-" + secrets.token_hex(4)
    name = f"亳州驻{city}联络站{code[-4:]}" if kind == "liaison" else f"{city}代办点{code[-4:]}"
    r = await client.post(
        f"{API}/admin/stations",
        headers=await admin(login),
        json={
            "code": code,
            "name": name,
            "kind": kind,
            "city": city,
            "address": f"{city}市人民路1号",
            "hours": "周一至周五 8:30-17:30",
            "contact_name": "王站长",
            "contact_phone": "0512-52000000",
        },
    )
    assert r.status_code == 201, r.text
    return Station(r.json()["id"], name)


async def make_agent(client: httpx.AsyncClient, login: LoginFn, station: Station | None = None) -> AgentCtx:
    station = station or await make_station(client, login)
    headers = await login(roles=["agent"], station_id=station.id)
    me = (await client.get(f"{API}/me", headers=headers)).json()
    return AgentCtx(headers, me["id"], station)


@dataclass
class ResidentCtx:
    headers: dict[str, str]
    id: str
    phone: str
    id_number: str


_seq = iter(range(100, 999))


async def make_resident(
    client: httpx.AsyncClient, login: LoginFn, level: int = 2, real_name: bool = True
) -> ResidentCtx:
    """A resident; real-named (name and citizen ID number on the account) unless told otherwise."""
    from app_api.core.crypto import encrypt_str
    from app_api.platform.accounts.models import Account
    from app_api.platform.accounts.principal import invalidate
    from app_api.platform.datahub.service import id_hash

    phone = new_phone()
    headers = await login(phone)
    await set_level(client, headers, level)
    rid = (await client.get(f"{API}/me", headers=headers)).json()["id"]
    id_number = new_id_number("341602", dt.date(1948, 1, 1) + dt.timedelta(days=next(_seq)))
    if real_name:
        async with session_scope() as s:
            acc = await s.get(Account, rid)
            acc.real_name_enc = encrypt_str("王桂兰", aad="name")
            acc.id_number_enc = encrypt_str(id_number, aad="id_number")
            acc.id_number_hash = id_hash(id_number)
            s.add(acc)
        await invalidate(rid)
    return ResidentCtx(headers, rid, phone, id_number)


async def inbox(client: httpx.AsyncClient, phone: str) -> list[dict[str, Any]]:
    return (await client.get(f"{API}/dev/sms", params={"phone": phone})).json()["messages"]


async def sms_mandate(
    client: httpx.AsyncClient,
    agent: AgentCtx,
    resident: ResidentCtx,
    scopes: list[str] | None = None,
    items: list[str] | None = None,
    days: int = 30,
) -> dict[str, Any]:
    from app_api.core.redis import get_redis

    await (await get_redis()).delete(f"agents:mcool:{resident.phone}")
    r = await client.post(
        f"{API}/agent/mandates/sms-requests",
        headers=agent.headers,
        json={
            "phone": resident.phone,
            "scopes": scopes or ["apply", "track"],
            "items": items or [],
            "days": days,
        },
    )
    assert r.status_code == 202, r.text
    text = next(m["text"] for m in await inbox(client, resident.phone) if "授权验证码" in m["text"])
    code = re.search(r"授权验证码(\d{6})", text)
    assert code, text
    r = await client.post(
        f"{API}/agent/mandates/sms-confirm",
        headers=agent.headers,
        json={"request_id": r.json()["request_id"], "code": code.group(1)},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def submission(
    resident: ResidentCtx, item: str = ITEM, key: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "client_key": key or "k-" + secrets.token_hex(8),
        "resident_id": resident.id,
        "item_code": item,
        "form": {"person.address": "安徽省亳州市谯城区十八里镇王庄村", "备注": "村代办点代办"},
        **extra,
    }


async def gov_applications(agent_id: str) -> list[Any]:
    from columns.gov_services.models import Application

    async with sessionmaker()() as s:
        return list((await s.exec(select(Application).where(Application.agent_id == agent_id))).all())


# ---------------------------------------------------------------------------------------------
