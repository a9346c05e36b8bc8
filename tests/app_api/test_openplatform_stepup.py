"""Step-up in the open platform's OpenID Connect provider, conformance-style through the HTTP API.

A column demands an identity level by its registration or per request (``acr_values``, or the
``claims`` parameter's essential ``acr``). A resident below it is sent to step up instead of being
handed a code at a lower level; after the real-name check the request goes on where it stopped; a
resident who declines sends the column ``access_denied`` (or ``unmet_authentication_requirements``
for an essential claim, as OIDC reserves it). No code is ever issued below the level.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from sqlmodel import select

from app_api.core.crypto import encrypt_str
from app_api.core.db import session_scope
from app_api.platform.accounts.models import Account
from app_api.platform.datahub.models import PopulationRecord
from app_api.platform.datahub.service import id_hash
from app_api.platform.openplatform.models import AuthCode
from tests.app_api.test_openplatform_oidc import (
    REDIRECT,
    Col,
    admin,
    audited,
    auth_request,
    consent_value,
    exchange,
    jwks,
    open_consent,
    register,
    ticket,
)
from tests.citizens import new_id_number
from tests.conftest import LoginFn

__all__ = ["admin"]


async def person(name: str = "张秀兰") -> tuple[str, str]:
    """A population record in the local data center: (name, id number)."""
    number = new_id_number("341602", dt.date(1956, 3, 14))
    async with session_scope() as s:
        s.add(
            PopulationRecord(
                id_number_hash=id_hash(number),
                id_number_enc=encrypt_str(number, aad="id_number"),
                name_enc=encrypt_str(name, aad="name"),
                gender="女",
                birth_date=dt.date(1956, 3, 14),
                address_enc=encrypt_str("安徽省亳州市谯城区魏武大道88号", aad="address"),
                photo_enc=None,
            )
        )
    return name, number


def step_up_link(page: httpx.Response) -> tuple[int, str]:
    """(level, continue URL) from the step-up page's link the app follows."""
    m = re.search(r'id="step-up"[^>]*href="([^"]+)"', page.text)
    assert m, page.text
    link = urlsplit(html.unescape(m.group(1)))
    assert f"{link.scheme}://{link.netloc}{link.path}" == "wojia://identity/step-up"
    q = parse_qs(link.query)
    return int(q["level"][0]), q["continue"][0]


async def continue_after_step_up(
    client: httpx.AsyncClient, resident: dict[str, str], cont: str
) -> httpx.Response:
    t = await ticket(client, resident)
    u = urlsplit(cont)
    return await client.get(f"{u.path}?{u.query}&{urlencode({'ticket': t})}")


def redirected(r: httpx.Response) -> dict[str, list[str]]:
    assert r.status_code == 302, r.text
    loc = urlsplit(r.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
    return parse_qs(loc.query)


async def codes_of(session: Any, column: Col) -> list[AuthCode]:
    return list((await session.exec(select(AuthCode).where(AuthCode.column_id == column.id))).all())


async def test_column_level_sends_resident_to_step_up_then_continues(
    client: httpx.AsyncClient,
    login: LoginFn,
    admin: dict[str, str],
    session: Any,
) -> None:
    col = await register(client, admin, level=2)
    resident = await login()
    req = auth_request(col, scope="openid phone identity_level")
    page = await open_consent(client, resident, req)
    assert page.status_code == 200
    assert "要求实名认证等级 L2" in page.text and "您当前为 L1" in page.text
    assert 'value="allow"' not in page.text  # nothing to consent to yet
    level, cont = step_up_link(page)
    assert level == 2 and "resume=" in cont
    assert await audited(session, "openplatform.step_up_required", col.id)
    assert await codes_of(session, col) == []

    # The app runs the identity package's real-name check, then opens the continue address.
    name, number = await person()
    r = await client.post(
        "/api/v1/identity/real-name",
        json={"name": name, "id_number": number, "agree": True},
        headers=resident,
    )
    assert r.status_code == 200, r.text
    consent = await continue_after_step_up(client, resident, cont)
    assert consent.status_code == 200 and "同意并登录" in consent.text and "您的手机号码" in consent.text
    r = await client.post(
        "/api/v1/oidc/authorize", data={"consent": consent_value(consent), "decision": "allow"}
    )
    q = redirected(r)
    assert q["state"] == [req.params["state"]]
    tokens = await exchange(client, col, q["code"][0], req.verifier)
    assert tokens.status_code == 200, tokens.text
    idt = jwt.decode(tokens.json()["id_token"], await jwks(client), algorithms=["ES256"])
    assert idt.claims["acr"] == "L2" and idt.claims["nonce"] == req.params["nonce"]


async def test_acr_values_above_the_residents_level_and_declined(
    client: httpx.AsyncClient,
    login: LoginFn,
    admin: dict[str, str],
    session: Any,
) -> None:
    col = await register(client, admin, level=1)
    resident = await login(level=2)
    req = auth_request(col, acr_values="L3")
    page = await open_consent(client, resident, req)
    assert "要求实名认证等级 L3" in page.text and "人脸识别" in page.text
    r = await client.post(
        "/api/v1/oidc/authorize", data={"consent": consent_value(page), "decision": "decline"}
    )
    q = redirected(r)
    assert q["error"] == ["access_denied"] and q["state"] == [req.params["state"]] and "code" not in q
    assert await audited(session, "openplatform.step_up_declined", col.id)
    assert await codes_of(session, col) == []
    # The page is answered once: a replayed form gets no second answer.
    r = await client.post(
        "/api/v1/oidc/authorize", data={"consent": consent_value(page), "decision": "decline"}
    )
    assert r.status_code == 400


async def test_essential_acr_claim_declined_is_unmet_authentication_requirements(
    client: httpx.AsyncClient,
    login: LoginFn,
    admin: dict[str, str],
    session: Any,
) -> None:
    col = await register(client, admin, level=1)
    resident = await login(level=2)
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": ["L3"]}}})
    req = auth_request(col, claims=claims)
    page = await open_consent(client, resident, req)
    assert "L3" in page.text
    # Whatever the form says, the step-up page's answer is never a code.
    r = await client.post(
        "/api/v1/oidc/authorize", data={"consent": consent_value(page), "decision": "allow"}
    )
    q = redirected(r)
    assert q["error"] == ["unmet_authentication_requirements"] and "code" not in q
    assert await codes_of(session, col) == []


async def test_level_met_goes_straight_to_consent_with_the_level_reached(
    client: httpx.AsyncClient,
    login: LoginFn,
    admin: dict[str, str],
) -> None:
    col = await register(client, admin, level=1)
    resident = await login(level=3)
    # L2 asked, L3 held: levels nest; an unknown voluntary value is ignored.
    req = auth_request(col, acr_values="gold L2")
    page = await open_consent(client, resident, req)
    assert page.status_code == 200 and "同意并登录" in page.text
    r = await client.post(
        "/api/v1/oidc/authorize", data={"consent": consent_value(page), "decision": "allow"}
    )
    q = redirected(r)
    tokens = (await exchange(client, col, q["code"][0], req.verifier)).json()
    assert jwt.decode(tokens["id_token"], await jwks(client)).claims["acr"] == "L3"
    d = (await client.get("/.well-known/openid-configuration")).json()
    assert d["acr_values_supported"] == ["L0", "L1", "L2", "L3"] and d["claims_parameter_supported"] is True


async def test_bad_acr_requests_are_refused_to_the_column(
    client: httpx.AsyncClient,
    login: LoginFn,
    admin: dict[str, str],
    session: Any,
) -> None:
    col = await register(client, admin)
    resident = await login(level=3)
    unknown = json.dumps({"id_token": {"acr": {"essential": True, "value": "gold"}}})
    for over, error in (
        ({"claims": unknown}, "unmet_authentication_requirements"),
        ({"claims": "{"}, "invalid_request"),
    ):
        req = auth_request(col, **over)
        q = redirected(await open_consent(client, resident, req))
        assert q["error"] == [error] and q["state"] == [req.params["state"]]
    assert await codes_of(session, col) == []


async def test_continue_address_is_the_residents_and_checks_the_level_again(
    client: httpx.AsyncClient,
    login: LoginFn,
    admin: dict[str, str],
    session: Any,
) -> None:
    col = await register(client, admin, level=3)
    resident = await login(level=2)
    page = await open_consent(client, resident, auth_request(col))
    _, cont = step_up_link(page)
    # Not stepped up yet: the step-up page again, still no code.
    again = await continue_after_step_up(client, resident, cont)
    assert again.status_code == 200 and "您当前为 L2" in again.text and 'value="allow"' not in again.text
    # Another account cannot carry on this resident's request.
    other = await login(level=3)
    r = await continue_after_step_up(client, other, cont)
    assert r.status_code == 403 and "另一个账号" in r.text
    # A forged continue address is refused before anything else.
    u = urlsplit(cont)
    forged = cont.replace("resume=", "resume=x")
    r = await continue_after_step_up(client, resident, forged)
    assert r.status_code == 400 and u.path == "/api/v1/oidc/authorize"
    assert await codes_of(session, col) == []


async def test_no_code_when_the_level_fell_before_the_answer(
    client: httpx.AsyncClient,
    login: LoginFn,
    admin: dict[str, str],
    session: Any,
) -> None:
    col = await register(client, admin, level=3)
    resident = await login(level=3)
    req = auth_request(col)
    page = await open_consent(client, resident, req)
    assert "同意并登录" in page.text
    me = (await client.get("/api/v1/me", headers=resident)).json()
    async with session_scope() as s:
        account = await s.get(Account, me["id"])
        assert account is not None
        account.identity_level = 2  # e.g. the L3 evidence was withdrawn meanwhile
        s.add(account)
    r = await client.post(
        "/api/v1/oidc/authorize", data={"consent": consent_value(page), "decision": "allow"}
    )
    q = redirected(r)
    assert q["error"] == ["access_denied"] and "code" not in q
    rows = await audited(session, "openplatform.authorize_refused", col.id)
    assert any(e.data.get("reason") == "level_not_met" for e in rows)
    assert await codes_of(session, col) == []
