"""The column's client of the platform's published interface, and nothing else.

- OpenID Connect: the discovery document, the authorize URL (PKCE S256), the token endpoint
  (client_secret_basic), the ID token verified with joserfc against the JWKS, userinfo.
- The cashier: signed server-to-server requests (``signing.py``) to open an order, read it, refund.
- Messages: templates and messages with the column's client credentials (HTTP Basic).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from school_fees import signing

# The claims each scope releases (docs/openplatform.md); anything else in an answer is not read.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "phone": ("phone_number", "phone_number_verified"),
    "real_name": ("name",),
    "identity_level": ("identity_level", "acr"),
}


@dataclass(frozen=True)
class Config:
    issuer: str  # the platform's public base URL; discovery is at issuer + /.well-known/...
    client_id: str
    client_secret: str
    cashier_key: str
    redirect_uri: str
    scope: str = "openid phone"
    sub_account: str = "school-01"


class PlatformError(Exception):
    """The platform refused or could not be reached: ``code`` is its stable error code."""

    def __init__(self, status: int, code: str, title: str = "") -> None:
        super().__init__(f"{status} {code} {title}".strip())
        self.status, self.code, self.title = status, code, title


class TokenInvalid(PlatformError):
    """The access token is no longer accepted (expired, revoked, the column disabled)."""


def _error(r: httpx.Response) -> PlatformError:
    try:
        body = r.json()
    except ValueError:
        body = {}
    # problem+json (cashier, messages) carries ``code``; the OAuth endpoints carry ``error``.
    code = str(body.get("code") or body.get("error") or f"http_{r.status_code}")
    title = str(body.get("title") or body.get("error_description") or "")
    return PlatformError(r.status_code, code, title)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Platform:
    def __init__(self, cfg: Config, http: httpx.AsyncClient) -> None:
        self.cfg, self.http = cfg, http
        self._discovery: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    # --- OpenID Connect --------------------------------------------------------------------------

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            r = await self.http.get(self.cfg.issuer + "/.well-known/openid-configuration")
            if r.status_code != 200:
                raise _error(r)
            doc = r.json()
            # OIDC Discovery 4.3: the document must name the issuer it was fetched from.
            if doc.get("issuer") != self.cfg.issuer:
                raise PlatformError(502, "issuer_mismatch", str(doc.get("issuer")))
            self._discovery = doc
        return self._discovery

    async def authorize_url(self, *, state: str, nonce: str, challenge: str) -> str:
        d = await self.discovery()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.cfg.client_id,
                "redirect_uri": self.cfg.redirect_uri,
                "scope": self.cfg.scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{d['authorization_endpoint']}?{query}"

    async def exchange(self, code: str, verifier: str) -> dict[str, Any]:
        d = await self.discovery()
        r = await self.http.post(
            d["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.cfg.redirect_uri,
                "code_verifier": verifier,
            },
            auth=(self.cfg.client_id, self.cfg.client_secret),
        )
        if r.status_code != 200:
            raise _error(r)
        return dict(r.json())

    async def _key_set(self, kid: str) -> KeySet:
        if self._keys is not None:
            try:
                self._keys.get_by_kid(kid)
                return self._keys
            except JoseError:
                pass
        # First use, or a kid not seen yet: the platform rotated its key; fetch JWKS again.
        r = await self.http.get((await self.discovery())["jwks_uri"])
        if r.status_code != 200:
            raise _error(r)
        self._keys = KeySet.import_key_set(r.json())
        return self._keys

    async def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature (ES256, a key of the JWKS by ``kid``), issuer,
        audience (our client_id), expiry and nonce are right; PlatformError otherwise."""
        try:
            header = jws.extract_compact(id_token.encode()).headers()
            keys = await self._key_set(str(header.get("kid", "")))
            token = jwt.decode(id_token, keys, algorithms=["ES256"])
            jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self.cfg.issuer},
                aud={"essential": True, "value": self.cfg.client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError) as e:
            raise PlatformError(401, "id_token_invalid", str(e)) from None
        return dict(token.claims)

    async def userinfo(self, access_token: str, granted: str) -> dict[str, Any]:
        """The claims of the granted scopes only (an unexpected claim is dropped, never stored)."""
        r = await self.http.get(
            (await self.discovery())["userinfo_endpoint"], headers={"authorization": f"Bearer {access_token}"}
        )
        if r.status_code == 401:
            e = _error(r)
            raise TokenInvalid(e.status, e.code, e.title)
        if r.status_code != 200:
            raise _error(r)
        allowed = {c for s in granted.split() for c in SCOPE_CLAIMS.get(s, ())}
        return {k: v for k, v in r.json().items() if k in allowed}

    # --- the cashier (signed) --------------------------------------------------------------------

    async def _signed(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.cfg.issuer + path
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() if body else b""
        headers = signing.headers(
            app_id=self.cfg.client_id,
            key=self.cfg.cashier_key,
            method=method,
            path=urlsplit(url).path,
            body=raw,
            now=time.time(),
        )
        if body is not None:
            headers["content-type"] = "application/json"
        r = await self.http.request(method, url, content=raw, headers=headers)
        if r.status_code not in (200, 201):
            raise _error(r)
        return dict(r.json())

    async def create_order(
        self, *, out_order_no: str, sub: str, amount_fen: int, description: str
    ) -> dict[str, Any]:
        """Idempotent by ``out_order_no``: sending the same order again answers the same order."""
        return await self._signed(
            "POST",
            "/api/v1/openplatform/cashier/orders",
            {
                "out_order_no": out_order_no,
                "sub": sub,
                "amount_fen": amount_fen,
                "description": description,
                "sub_account": self.cfg.sub_account,
            },
        )

    async def order(self, order_id: str) -> dict[str, Any]:
        return await self._signed("GET", f"/api/v1/openplatform/cashier/orders/{order_id}")

    async def refund(
        self, order_id: str, *, out_refund_no: str, amount_fen: int, reason: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"out_refund_no": out_refund_no, "amount_fen": amount_fen}
        if reason:
            body["reason"] = reason
        return await self._signed("POST", f"/api/v1/openplatform/cashier/orders/{order_id}/refunds", body)

    # --- messages (HTTP Basic with the client credentials) ---------------------------------------

    async def _basic(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await self.http.request(
            method, self.cfg.issuer + path, json=body, auth=(self.cfg.client_id, self.cfg.client_secret)
        )
        if r.status_code not in (200, 201):
            raise _error(r)
        return dict(r.json())

    async def propose_template(self, key: str, text: str) -> dict[str, Any]:
        return await self._basic("POST", "/api/v1/openplatform/templates", {"key": key, "text": text})

    async def templates(self) -> dict[str, Any]:
        return await self._basic("GET", "/api/v1/openplatform/templates")

    async def send_message(
        self, *, sub: str, template: str, params: dict[str, str], idempotency_key: str
    ) -> dict[str, Any]:
        return await self._basic(
            "POST",
            "/api/v1/openplatform/messages",
            {"sub": sub, "template": template, "params": params, "idempotency_key": idempotency_key},
        )
