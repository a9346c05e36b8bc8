"""Messages from third-party columns (issue 20, item 4): a column proposes a template, an admin approves
it, the column's server sends it to a resident it knows by its pairwise subject id; the resident finds
it in their messages with the column's name. Refused, with a clear error and an audit entry: a template
not approved, a resident who never authorised the column or revoked it, parameters that do not fit, a
key reused for another message, a wrong secret; a resent request is answered with the same message."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
from joserfc import jwt
from sqlmodel import select

from app_api.core.db import sessionmaker
from app_api.platform.audit.models import AuditEvent
from app_api.platform.openplatform.messages import DAILY_LIMIT
from tests.app_api.test_openplatform_oidc import Col, jwks, register, sign_in
from tests.conftest import LoginFn

API = "/api/v1"


async def _approved_template(client: httpx.AsyncClient, admin: dict[str, str], col: Col) -> str:
    r = await client.post(
        f"{API}/openplatform/templates",
        auth=col.auth,
        json={"key": "fine_due", "text": "您的车辆$plate有一笔罚款$amount元待缴，请在$date前处理。"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    listed = (await client.get(f"{API}/admin/external-columns/{col.id}/templates", headers=admin)).json()
    (pending,) = listed["templates"]
    r = await client.post(
        f"{API}/admin/external-column-templates/{pending['id']}/approve",
        headers=admin,
        json={"note": "内容合规"},
    )
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    return "fine_due"


async def _subject(client: httpx.AsyncClient, resident: dict[str, str], col: Col) -> str:
    tokens = await sign_in(client, resident, col, scope="openid")
    claims = jwt.decode(tokens["id_token"], await jwks(client), algorithms=["ES256"]).claims
    return str(claims["sub"])


FINE = {"plate": "皖S12345", "amount": "200", "date": "12月31日"}


def _msg(sub: str, params: dict[str, str] | None = None, key: str | None = None) -> dict[str, Any]:
    return {
        "sub": sub,
        "template": "fine_due",
        "params": FINE if params is None else params,
        "idempotency_key": key or secrets.token_hex(8),
    }


async def _inbox(client: httpx.AsyncClient, resident: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/me/notifications", headers=resident)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def _audited(action: str, subject_id: str) -> list[AuditEvent]:
    async with sessionmaker()() as s:
        rows = await s.exec(
            select(AuditEvent).where(AuditEvent.action == action, AuditEvent.subject_id == subject_id)
        )
        return list(rows.all())


async def test_an_authorised_resident_gets_an_approved_message_once(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    admin = await login(roles=["admin"])
    col = await register(client, admin)
    name = (await client.get(f"{API}/admin/external-columns", headers=admin)).json()["columns"]
    col_name = next(c["name"] for c in name if c["id"] == col.id)
    await _approved_template(client, admin, col)
    resident = await login()
    sub = await _subject(client, resident, col)

    body = _msg(sub)
    r = await client.post(f"{API}/openplatform/messages", auth=col.auth, json=body)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["sent_now"] is True
    # A resend of the same request (a lost answer): the same message, not a second one.
    r = await client.post(f"{API}/openplatform/messages", auth=col.auth, json=body)
    assert r.status_code == 200 and r.json()["id"] == first["id"] and r.json()["sent_now"] is False

    texts = [n["text"] for n in await _inbox(client, resident)]
    mine = [t for t in texts if "皖S12345" in t]
    assert mine == [f"【我家亳州】{col_name}：您的车辆皖S12345有一笔罚款200元待缴，请在12月31日前处理。"]
    assert len(await _audited("openplatform.message_sent", col.id)) == 1

    # The same key for another message is refused; nothing more reaches the resident.
    r = await client.post(
        f"{API}/openplatform/messages",
        auth=col.auth,
        json={**body, "params": {**body["params"], "amount": "9"}},
    )
    assert r.status_code == 409 and r.json()["code"] == "openplatform.idempotency_key_reused", r.text
    assert len([t for t in (n["text"] for n in await _inbox(client, resident)) if "皖S12345" in t]) == 1


async def test_refusals_are_clear_audited_and_send_nothing(client: httpx.AsyncClient, login: LoginFn) -> None:
    admin = await login(roles=["admin"])
    col = await register(client, admin)
    other_col = await register(client, admin)
    resident = await login()
    sub = await _subject(client, resident, col)

    # Not approved yet.
    r = await client.post(
        f"{API}/openplatform/templates", auth=col.auth, json={"key": "fine_due", "text": "罚款$amount元"}
    )
    assert r.status_code == 201
    r = await client.post(f"{API}/openplatform/messages", auth=col.auth, json=_msg(sub, {"amount": "1"}))
    assert r.status_code == 422 and r.json()["code"] == "openplatform.template_not_approved", r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["title"] == "该消息模板不存在或尚未通过审核"
    tid = (await client.get(f"{API}/openplatform/templates", auth=col.auth)).json()["templates"][0]["id"]
    r = await client.post(f"{API}/admin/external-column-templates/{tid}/approve", headers=admin, json={})
    assert r.status_code == 200

    # Parameters that do not fit the template.
    for params in ({}, {"amount": "1", "plate": "x"}, {"amount": ""}, {"amount": "9" * 61}):
        r = await client.post(
            f"{API}/openplatform/messages", auth=col.auth, json={**_msg(sub), "params": params}
        )
        assert r.status_code == 422 and r.json()["code"] == "openplatform.message_params_invalid", (
            params,
            r.text,
        )
        assert r.json()["expected"] == ["amount"]

    # Another column's subject id, and a made-up one: not a resident who authorised this column.
    other_sub = await _subject(client, resident, other_col)
    assert other_sub != sub
    for s in (other_sub, "x" * 40):
        r = await client.post(f"{API}/openplatform/messages", auth=col.auth, json=_msg(s, {"amount": "1"}))
        assert r.status_code == 403 and r.json()["code"] == "openplatform.resident_not_authorised", r.text

    # A wrong secret; another column's templates are not this one's.
    r = await client.post(
        f"{API}/openplatform/messages",
        auth=httpx.BasicAuth(col.client_id, "wrong"),
        json=_msg(sub, {"amount": "1"}),
    )
    assert r.status_code == 401 and r.json()["code"] == "openplatform.client_unauthorized", r.text
    r = await client.post(
        f"{API}/openplatform/messages", auth=other_col.auth, json=_msg(other_sub, {"amount": "1"})
    )
    assert r.status_code == 422 and r.json()["code"] == "openplatform.template_not_approved"

    # The resident withdraws the column's authorisation: its next message is refused.
    r = await client.post(f"{API}/openplatform/messages", auth=col.auth, json=_msg(sub, {"amount": "1"}))
    assert r.status_code == 201, r.text
    r = await client.delete(f"{API}/me/external-columns/{col.id}", headers=resident)
    assert r.status_code == 204
    r = await client.post(f"{API}/openplatform/messages", auth=col.auth, json=_msg(sub, {"amount": "2"}))
    assert r.status_code == 403 and r.json()["code"] == "openplatform.resident_not_authorised"

    texts = [n["text"] for n in await _inbox(client, resident)]
    assert sum("罚款" in t for t in texts) == 1  # only the one sent while authorised
    reasons = [e.data["reason"] for e in await _audited("openplatform.message_refused", col.id)]
    assert reasons.count("template_not_approved") == 1 and reasons.count("not_authorised") == 3
    assert await _audited("openplatform.client_auth_failed", col.id)


async def test_a_column_cannot_flood_a_resident_and_concurrent_resends_send_once(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    admin = await login(roles=["admin"])
    col = await register(client, admin)
    await _approved_template(client, admin, col)
    resident = await login()
    sub = await _subject(client, resident, col)

    body = _msg(sub)
    results = await asyncio.gather(
        *(client.post(f"{API}/openplatform/messages", auth=col.auth, json=body) for _ in range(3))
    )
    codes = sorted(r.status_code for r in results)
    # One is sent; the others answer with it (or, on the embedded SQLite, are told to retry: 503).
    assert codes[0] in (200, 201) and codes.count(201) == 1 and set(codes) <= {200, 201, 503}, codes
    ids = {r.json()["id"] for r in results if r.status_code < 300}
    for r in results:
        if r.status_code == 503:
            again = await client.post(f"{API}/openplatform/messages", auth=col.auth, json=body)
            assert again.status_code == 200, again.text
            ids.add(again.json()["id"])
    assert len(ids) == 1
    for i in range(DAILY_LIMIT - 1):
        r = await client.post(
            f"{API}/openplatform/messages", auth=col.auth, json=_msg(sub, {**FINE, "plate": f"皖S0000{i}"})
        )
        assert r.status_code == 201, r.text
    r = await client.post(f"{API}/openplatform/messages", auth=col.auth, json=_msg(sub))
    assert r.status_code == 429 and r.json()["code"] == "openplatform.message_limit", r.text
    fines = [n for n in await _inbox(client, resident) if "罚款" in n["text"]]
    assert len(fines) == DAILY_LIMIT


async def test_a_malformed_template_is_refused(client: httpx.AsyncClient, login: LoginFn) -> None:
    admin = await login(roles=["admin"])
    col = await register(client, admin)
    for body in (
        {"key": "Bad-Key", "text": "x"},
        {"key": "ok_key", "text": ""},
        {"key": "ok_key", "text": "金额 $ 元"},
        {"key": "ok_key", "text": "x" * 201},
    ):
        r = await client.post(f"{API}/openplatform/templates", auth=col.auth, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post(
        f"{API}/openplatform/templates", auth=col.auth, json={"key": "ok_key", "text": "您好"}
    )
    assert r.status_code == 201
    r = await client.post(
        f"{API}/openplatform/templates", auth=col.auth, json={"key": "ok_key", "text": "您好"}
    )
    assert r.status_code == 409 and r.json()["code"] == "openplatform.template_exists"
