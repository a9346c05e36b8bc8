"""The open platform's OpenID Connect provider, conformance-style, through the HTTP API.

A column is played by the test: it builds the authorization URL with a PKCE S256 challenge (Authlib's
RFC 7636 helper), the resident's app exchanges its login for a one-time ticket and opens the consent
page, the column exchanges the code and verifies the ID token against the published JWKS with
joserfc, as a column's own server would.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlmodel import select

from app_api.platform.audit.models import AuditEvent
from tests.conftest import LoginFn

REDIRECT = "https://fines.example.cn/oidc/callback"


@dataclass
class Col:
    id: str
    client_id: str
    secret: str

    @property
    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.client_id, self.secret)


async def register(
    client: httpx.AsyncClient, admin: dict[str, str], *, scopes: list[str] | None = None, level: int = 1
) -> Col:
    r = await client.post(
        "/api/v1/admin/external-columns",
        headers=admin,
        json={
            "name": "交通罚款" + secrets.token_hex(3),
            "icon": "https://fines.example.cn/icon.png",
            "category": "交通出行",
            "url": "https://fines.example.cn/",
            "identity_level": level,
            "allowed_scopes": scopes or ["openid", "phone", "identity_level"],
            "redirect_uris": [REDIRECT],
            "operator_contact": "亳州交通服务公司 0558-1234567",
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert "client_secret_hash" not in body
    return Col(body["id"], body["client_id"], body["client_secret"])


@pytest.fixture
async def admin(login: LoginFn) -> dict[str, str]:
    return await login(roles=["admin"])


@pytest.fixture
async def column(client: httpx.AsyncClient, admin: dict[str, str]) -> Col:
    return await register(client, admin)


@dataclass
class Req:
    params: dict[str, str]
    verifier: str


def auth_request(col: Col, *, scope: str = "openid phone", **over: str | None) -> Req:
    verifier = secrets.token_urlsafe(48)
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": col.client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    params.update(over)
    return Req({k: v for k, v in params.items() if v is not None}, verifier)


async def ticket(client: httpx.AsyncClient, resident: dict[str, str]) -> str:
    r = await client.post("/api/v1/oidc/tickets", headers=resident)
    assert r.status_code == 200, r.text
    return str(r.json()["ticket"])


async def open_consent(client: httpx.AsyncClient, resident: dict[str, str], req: Req) -> httpx.Response:
    t = await ticket(client, resident)
    return await client.get("/api/v1/oidc/authorize?" + urlencode({**req.params, "ticket": t}))


def consent_value(page: httpx.Response) -> str:
    m = re.search(r'name="consent" value="([^"]+)"', page.text)
    assert m, page.text
    return html.unescape(m.group(1))


async def authorize(client: httpx.AsyncClient, resident: dict[str, str], req: Req) -> str:
    page = await open_consent(client, resident, req)
    assert page.status_code == 200, page.text
    r = await client.post(
        "/api/v1/oidc/authorize", data={"consent": consent_value(page), "decision": "allow"}
    )
    assert r.status_code == 302, r.text
    loc = urlsplit(r.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
    q = parse_qs(loc.query)
    assert q["state"] == [req.params["state"]]
    return q["code"][0]


async def exchange(
    client: httpx.AsyncClient, col: Col, code: str, verifier: str | None, **over: str
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **over}
    if verifier is not None:
        data["code_verifier"] = verifier
    return await client.post("/api/v1/oidc/token", data=data, auth=col.auth)


async def sign_in(
    client: httpx.AsyncClient, resident: dict[str, str], col: Col, scope: str = "openid phone"
) -> dict[str, Any]:
    req = auth_request(col, scope=scope)
    r = await exchange(client, col, await authorize(client, resident, req), req.verifier)
    assert r.status_code == 200, r.text
    return {**r.json(), "nonce": req.params["nonce"]}


async def userinfo(client: httpx.AsyncClient, access: str) -> httpx.Response:
    return await client.get("/api/v1/oidc/userinfo", headers={"Authorization": f"Bearer {access}"})


async def audited(session: Any, action: str, subject_id: str) -> list[AuditEvent]:
    rows = await session.exec(
        select(AuditEvent).where(AuditEvent.action == action, AuditEvent.subject_id == subject_id)
    )
    return list(rows.all())


async def jwks(client: httpx.AsyncClient) -> KeySet:
    r = await client.get("/api/v1/oidc/jwks")
    assert r.status_code == 200
    return KeySet.import_key_set(r.json())


# --- good input ---------------------------------------------------------------------------------------


async def test_discovery_document(client: httpx.AsyncClient) -> None:
    r = await client.get("/.well-known/openid-configuration")
    assert r.status_code == 200
    d = r.json()
    assert d["authorization_endpoint"] == d["issuer"] + "/api/v1/oidc/authorize"
    assert d["code_challenge_methods_supported"] == ["S256"]
    assert d["subject_types_supported"] == ["pairwise"]
    assert "openid" in d["scopes_supported"] and "real_name" in d["scopes_supported"]
    keys = (await client.get(urlsplit(d["jwks_uri"]).path)).json()["keys"]
    assert keys and all("d" not in k for k in keys)  # public halves only


async def test_sign_in_id_token_verifies_with_published_jwks(
    client: httpx.AsyncClient, login: LoginFn, column: Col
) -> None:
    resident = await login(level=2)
    page = await open_consent(client, resident, auth_request(column, scope="openid phone identity_level"))
    assert page.status_code == 200
    assert "申请使用您的" in page.text and "您的手机号码" in page.text and "您的实名认证等级" in page.text
    assert page.headers["x-frame-options"] == "DENY"

    tokens = await sign_in(client, resident, column, scope="openid phone identity_level")
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] <= 600
    issuer = (await client.get("/.well-known/openid-configuration")).json()["issuer"]
    keyset = await jwks(client)
    idt = jwt.decode(tokens["id_token"], keyset, algorithms=["ES256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": column.client_id},
        nonce={"essential": True, "value": tokens["nonce"]},
    ).validate(idt.claims)
    assert idt.claims["acr"] == "L2"
    at = jwt.decode(tokens["access_token"], keyset, algorithms=["ES256"])
    assert at.claims["aud"] == column.client_id and at.claims["exp"] - at.claims["iat"] <= 600

    info = await userinfo(client, tokens["access_token"])
    assert info.status_code == 200, info.text
    me = (await client.get("/api/v1/me", headers=resident)).json()
    assert info.json()["sub"] == idt.claims["sub"] != me["id"]
    assert info.json()["phone_number"].startswith("+86") and info.json()["identity_level"] == 2
    assert "name" not in info.json()


async def test_subject_is_pairwise_per_column(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str], column: Col
) -> None:
    resident = await login()
    other = await register(client, admin)
    a = await sign_in(client, resident, column)
    b = await sign_in(client, resident, other)
    again = await sign_in(client, resident, column)
    keyset = await jwks(client)
    subs = [jwt.decode(t["id_token"], keyset).claims["sub"] for t in (a, b, again)]
    assert subs[0] == subs[2] != subs[1]


async def test_userinfo_returns_only_granted_claims(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str]
) -> None:
    col = await register(client, admin, scopes=["openid", "phone", "real_name"])
    resident = await login()
    tokens = await sign_in(client, resident, col, scope="openid")
    info = (await userinfo(client, tokens["access_token"])).json()
    assert set(info) == {"sub"}


async def test_resident_lists_and_revokes_authorised_columns(
    client: httpx.AsyncClient, login: LoginFn, column: Col, session: Any
) -> None:
    resident = await login()
    tokens = await sign_in(client, resident, column)
    grants = (await client.get("/api/v1/me/external-columns", headers=resident)).json()["grants"]
    assert [g["column_id"] for g in grants] == [column.id]
    assert grants[0]["scopes"] == ["openid", "phone"] and "您的手机号码" in grants[0]["scope_names"]

    r = await client.delete(f"/api/v1/me/external-columns/{column.id}", headers=resident)
    assert r.status_code == 204
    assert (await client.get("/api/v1/me/external-columns", headers=resident)).json()["grants"] == []
    assert (await userinfo(client, tokens["access_token"])).status_code == 401
    assert await audited(session, "openplatform.grant_revoked", column.id)
    r = await client.delete(f"/api/v1/me/external-columns/{column.id}", headers=resident)
    assert r.status_code == 404 and r.json()["code"] == "openplatform.grant_not_found"


async def test_resident_denies_consent(client: httpx.AsyncClient, login: LoginFn, column: Col) -> None:
    resident = await login()
    req = auth_request(column)
    page = await open_consent(client, resident, req)
    r = await client.post("/api/v1/oidc/authorize", data={"consent": consent_value(page), "decision": "deny"})
    assert r.status_code == 302
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["error"] == ["access_denied"] and q["state"] == [req.params["state"]] and "code" not in q


async def test_key_rotation_keeps_old_key_published(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str], column: Col
) -> None:
    resident = await login()
    before = await sign_in(client, resident, column)
    r = await client.post("/api/v1/admin/oidc/keys/rotate", headers=admin)
    assert r.status_code == 200
    new_kid = r.json()["kid"]
    after = await sign_in(client, resident, column)
    keyset = await jwks(client)
    old = jwt.decode(before["id_token"], keyset)
    new = jwt.decode(after["id_token"], keyset)
    assert new.header["kid"] == new_kid != old.header["kid"]
    assert (await userinfo(client, before["access_token"])).status_code == 200


# --- bad input ---------------------------------------------------------------------------------------


async def test_missing_pkce_is_refused_at_authorize(
    client: httpx.AsyncClient, login: LoginFn, column: Col, session: Any
) -> None:
    resident = await login()
    for over in ({"code_challenge": None, "code_challenge_method": None}, {"code_challenge_method": "plain"}):
        r = await open_consent(client, resident, auth_request(column, **over))
        assert r.status_code == 302
        q = parse_qs(urlsplit(r.headers["location"]).query)
        assert q["error"] == ["invalid_request"] and "code" not in q
    events = await audited(session, "openplatform.authorize_refused", column.id)
    assert [e.data["reason"] for e in events].count("pkce_missing") == 2


async def test_wrong_or_missing_verifier_is_refused(
    client: httpx.AsyncClient, login: LoginFn, column: Col, session: Any
) -> None:
    resident = await login()
    for verifier in (secrets.token_urlsafe(48), None):
        req = auth_request(column)
        code = await authorize(client, resident, req)
        r = await exchange(client, column, code, verifier)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
        # The code was spent by the failed attempt: the right verifier cannot follow.
        r = await exchange(client, column, code, req.verifier)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    events = await audited(session, "openplatform.token_refused", column.id)
    assert [e.data["reason"] for e in events].count("pkce_failed") == 2


async def test_redirect_uri_differing_by_one_character(
    client: httpx.AsyncClient, login: LoginFn, column: Col, session: Any
) -> None:
    resident = await login()
    for uri in (REDIRECT + "/", REDIRECT[:-1] + "K", REDIRECT.replace("https://fines", "https://fines2")):
        r = await open_consent(client, resident, auth_request(column, redirect_uri=uri))
        # Never redirected to an unregistered address: a page for the resident instead.
        assert r.status_code == 400 and "location" not in r.headers
        assert "回调地址未经登记" in r.text
    events = await audited(session, "openplatform.authorize_refused", column.id)
    assert [e.data["reason"] for e in events].count("redirect_uri_mismatch") == 3
    # At the token endpoint too: the code is bound to the exact URI it was issued for.
    req = auth_request(column)
    code = await authorize(client, resident, req)
    r = await exchange(client, column, code, req.verifier, redirect_uri=REDIRECT + "?")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_reused_code_is_refused_and_revokes_its_tokens(
    client: httpx.AsyncClient, login: LoginFn, column: Col, session: Any
) -> None:
    resident = await login()
    req = auth_request(column)
    code = await authorize(client, resident, req)
    first = await exchange(client, column, code, req.verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    assert (await userinfo(client, access)).status_code == 200
    second = await exchange(client, column, code, req.verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    r = await userinfo(client, access)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    events = await audited(session, "openplatform.code_reused", column.id)
    assert len(events) == 1 and events[0].data["tokens_revoked"] == 1


async def test_token_presented_to_another_column(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str], column: Col, session: Any
) -> None:
    other = await register(client, admin)
    resident = await login()
    tokens = await sign_in(client, resident, column)
    r = await client.post("/api/v1/oidc/introspect", data={"token": tokens["access_token"]}, auth=other.auth)
    assert r.status_code == 200 and r.json()["active"] is False
    assert await audited(session, "openplatform.token_wrong_audience", column.id)
    r = await client.post("/api/v1/oidc/introspect", data={"token": tokens["access_token"]}, auth=column.auth)
    assert r.json()["active"] is True and r.json()["aud"] == column.client_id
    # A column cannot spend another column's code either.
    req = auth_request(column)
    code = await authorize(client, resident, req)
    r = await exchange(client, other, code, req.verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_scope_not_allowed_for_the_column(
    client: httpx.AsyncClient, login: LoginFn, column: Col, session: Any
) -> None:
    resident = await login()
    r = await open_consent(client, resident, auth_request(column, scope="openid real_name"))
    assert r.status_code == 302
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["error"] == ["invalid_scope"] and "code" not in q
    events = await audited(session, "openplatform.authorize_refused", column.id)
    assert any(e.data.get("scopes") == ["real_name"] for e in events)


async def test_disabled_column_is_refused_everywhere(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str], column: Col, session: Any
) -> None:
    resident = await login()
    tokens = await sign_in(client, resident, column)
    req = auth_request(column)
    pending_code = await authorize(client, resident, req)
    r = await client.post(f"/api/v1/admin/external-columns/{column.id}/disable", headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is False

    assert (await userinfo(client, tokens["access_token"])).status_code == 401
    r = await exchange(client, column, pending_code, req.verifier)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await open_consent(client, resident, auth_request(column))
    assert r.status_code == 400 and "已停用" in r.text
    assert (await audited(session, "openplatform.column_disabled", column.id))[0].data["tokens_revoked"] == 1
    # Enabling again does not bring the revoked tokens back.
    await client.post(f"/api/v1/admin/external-columns/{column.id}/enable", headers=admin)
    assert (await userinfo(client, tokens["access_token"])).status_code == 401
    assert (await sign_in(client, resident, column))["access_token"]
    # A column that keeps retrying with its revoked token is refused every time, but audited once a
    # minute (the first refusal above), not once per request: the chain does not grow with retries.
    for _ in range(5):
        assert (await userinfo(client, tokens["access_token"])).status_code == 401
    assert len(await audited(session, "openplatform.revoked_token_used", column.id)) == 1


async def test_ticket_is_single_use_and_required(
    client: httpx.AsyncClient, login: LoginFn, column: Col
) -> None:
    resident = await login()
    t = await ticket(client, resident)
    url = "/api/v1/oidc/authorize?" + urlencode({**auth_request(column).params, "ticket": t})
    assert (await client.get(url)).status_code == 200
    r = await client.get(url)
    assert r.status_code == 401 and "重新打开" in r.text
    r = await client.get("/api/v1/oidc/authorize?" + urlencode(auth_request(column).params))
    assert r.status_code == 401


async def test_identity_level_below_the_columns(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str]
) -> None:
    col = await register(client, admin, level=3)
    resident = await login()
    r = await open_consent(client, resident, auth_request(col))
    # Sent to step up (tests/app_api/test_openplatform_stepup.py), never to the consent form.
    assert r.status_code == 200 and "要求实名认证等级 L3" in r.text and 'value="allow"' not in r.text


async def test_wrong_client_secret_and_admin_only_registration(
    client: httpx.AsyncClient, login: LoginFn, column: Col
) -> None:
    r = await client.post(
        "/api/v1/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": "x",
            "redirect_uri": REDIRECT,
            "code_verifier": "y",
        },
        auth=httpx.BasicAuth(column.client_id, "wrong"),
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    resident = await login()
    r = await client.post("/api/v1/admin/external-columns", headers=resident, json={})
    assert r.status_code == 403


async def test_consent_form_is_answered_once_and_cannot_be_forged(
    client: httpx.AsyncClient, login: LoginFn, column: Col
) -> None:
    resident = await login()
    page = await open_consent(client, resident, auth_request(column))
    consent = consent_value(page)
    first = await client.post("/api/v1/oidc/authorize", data={"consent": consent, "decision": "allow"})
    assert first.status_code == 302 and "code=" in first.headers["location"]
    replay = await client.post("/api/v1/oidc/authorize", data={"consent": consent, "decision": "allow"})
    assert replay.status_code == 400 and "location" not in replay.headers and "重新打开" in replay.text
    page = await open_consent(client, resident, auth_request(column))
    payload, _, sig = consent_value(page).partition(".")
    forged = payload + "." + ("0" if sig[0] != "0" else "1") + sig[1:]
    r = await client.post("/api/v1/oidc/authorize", data={"consent": forged, "decision": "allow"})
    assert r.status_code == 400 and "location" not in r.headers


async def test_purge_keeps_live_rows_and_drops_day_old_ones(
    client: httpx.AsyncClient, login: LoginFn, column: Col, session: Any
) -> None:
    import datetime as dt

    from app_api.core.db import utcnow
    from app_api.platform.openplatform.models import AuthCode, AuthTicket, IssuedToken
    from app_api.platform.openplatform.tasks import purge_expired

    resident = await login()
    tokens = await sign_in(client, resident, column)
    jti = jwt.decode(tokens["access_token"], await jwks(client)).claims["jti"]
    token = await session.get(IssuedToken, jti)
    assert token is not None
    code_hash, account_id = token.code_hash, token.account_id
    # Nothing of this sign-in is a day past its expiry yet: all stays.
    await purge_expired(now=utcnow())
    session.expire_all()
    assert await session.get(IssuedToken, jti) is not None
    assert await session.get(AuthCode, code_hash) is not None
    # Two days on, this sign-in's rows are gone (other tests' rows may go too: counts are not asserted).
    await purge_expired(now=utcnow() + dt.timedelta(days=2))
    session.expire_all()
    assert await session.get(IssuedToken, jti) is None
    assert await session.get(AuthCode, code_hash) is None
    tickets = await session.exec(select(AuthTicket).where(AuthTicket.account_id == account_id))
    assert tickets.all() == []
    # The column's token is unknown now, still refused.
    assert (await userinfo(client, tokens["access_token"])).status_code == 401


async def test_malformed_pkce_and_consent_values_are_refused_cleanly(
    client: httpx.AsyncClient, login: LoginFn, column: Col
) -> None:
    resident = await login()
    r = await open_consent(client, resident, auth_request(column, code_challenge="挑战" * 30))
    assert r.status_code == 302 and "error=invalid_request" in r.headers["location"]
    for verifier in ("验证" * 30, "short", "a" * 129):
        req = auth_request(column)
        r = await exchange(client, column, await authorize(client, resident, req), verifier)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", verifier
    for consent in ("签名.签名", "nodot", "e30.abc"):
        r = await client.post("/api/v1/oidc/authorize", data={"consent": consent, "decision": "allow"})
        assert r.status_code == 400 and "location" not in r.headers, consent


async def test_an_external_column_is_on_the_home_screen_until_disabled(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str]
) -> None:
    """Registered, it is listed under its category beside the built-in columns, opening its own
    URL; disabled, it is gone from every worker's home screen at once."""
    col = await register(client, admin)
    resident = await login()

    async def listed() -> list[dict[str, Any]]:
        home = (await client.get("/api/v1/home", headers=resident)).json()
        return [
            c for cat in home["categories"] for c in cat["columns"] if c["slug"] == f"ext-{col.client_id}"
        ]

    (card,) = await listed()
    assert card["path"] == "https://fines.example.cn/" and card["external"] is True and card["available"]
    home = (await client.get("/api/v1/home", headers=resident)).json()
    traffic = next(cat for cat in home["categories"] if cat["name"] == "交通出行")
    assert any(c["slug"] == card["slug"] for c in traffic["columns"])
    assert any(not c["external"] for cat in home["categories"] for c in cat["columns"])  # built-in ones stay

    r = await client.post(f"/api/v1/admin/external-columns/{col.id}/disable", headers=admin)
    assert r.status_code == 200
    assert await listed() == []
    # The admins' list of built-in columns is unchanged by external ones.
    built_in = (await client.get("/api/v1/admin/columns", headers=admin)).json()["columns"]
    assert not any(c["slug"].startswith("ext-") for c in built_in)


async def test_an_admin_rotates_a_columns_client_secret(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str], column: Col, session: Any
) -> None:
    """A leaked secret is replaced: the new one is shown once and works, the old one is refused at
    once, the rotation is audited; only an admin may do it, and an unknown column is a 404."""
    resident = await login()
    before = await sign_in(client, resident, column)
    r = await client.post(f"/api/v1/admin/external-columns/{column.id}/client-secret", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["client_id"] == column.client_id and "client_secret_hash" not in body
    new = Col(column.id, column.client_id, body["client_secret"])
    assert new.secret != column.secret

    req = auth_request(column)
    code = await authorize(client, resident, req)
    refused = await exchange(client, column, code, req.verifier)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    after = await sign_in(client, resident, new)
    assert (await userinfo(client, after["access_token"])).status_code == 200
    # Tokens issued before the rotation stay valid (disabling the column is what revokes them).
    assert (await userinfo(client, before["access_token"])).status_code == 200
    assert len(await audited(session, "openplatform.client_secret_rotated", column.id)) == 1

    r = await client.post(f"/api/v1/admin/external-columns/{column.id}/client-secret", headers=resident)
    assert r.status_code == 403
    r = await client.post("/api/v1/admin/external-columns/nope/client-secret", headers=admin)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    # Neither refusal changed the secret.
    assert (await sign_in(client, resident, new))["access_token"]
