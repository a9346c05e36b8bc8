"""Helpers of the identity API tests: the calls a resident's client makes, and what they record.

Residents are created through the real SMS login; their population records (with an ID photo from
tests/fixtures/faces, or none) are written into the local data center first (``person_factory``).
"""

from __future__ import annotations

import io
from typing import Any

import httpx
from sqlmodel import select

from identity.models import IdentityAttempt

API = "/api/v1/identity"


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["code"] == code, body
    assert body["title"] and body["detail"]
    return body


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get(f"{API}/me", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def account_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    return (await client.get("/api/v1/me", headers=headers)).json()["id"]


async def real_name(client, headers, name, number) -> httpx.Response:
    return await client.post(
        f"{API}/real-name", json={"name": name, "id_number": number, "agree": True}, headers=headers
    )


async def l2_resident(client, login, person_factory, name="奥巴马", photo="obama_3.jpg") -> dict[str, str]:
    headers = await login()
    pname, number = await person_factory(name, photo)
    r = await real_name(client, headers, pname, number)
    assert r.status_code == 200, r.text
    return headers


async def consented(client, headers) -> None:
    r = await client.post(f"{API}/face/consent", json={"agree": True}, headers=headers)
    assert r.status_code == 200, r.text


async def challenge(client, headers, purpose: str = "identity.l3") -> dict[str, Any]:
    r = await client.post(f"{API}/face/challenges", json={"purpose": purpose}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def upload(client, headers, challenge_id: str, frames: list[bytes]) -> httpx.Response:
    files = [("frames", (f"f{i}.jpg", io.BytesIO(b), "image/jpeg")) for i, b in enumerate(frames)]
    return await client.post(
        f"{API}/face/verifications", data={"challenge_id": challenge_id}, files=files, headers=headers
    )


async def attempts(session, aid: str) -> list[IdentityAttempt]:
    rows = (await session.exec(select(IdentityAttempt).where(IdentityAttempt.account_id == aid))).all()
    return sorted(rows, key=lambda a: a.created_at)
