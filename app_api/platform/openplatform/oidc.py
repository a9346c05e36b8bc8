"""The OpenID Connect provider's flow: tickets, authorization requests, codes, tokens, claims.

Built on Authlib's OAuth 2.0 pieces (its error classes give the RFC 6749 error bodies, its RFC 7636
helper computes the S256 challenge) and joserfc for JWS/JWT. The grant logic is ours because
Authlib's ``AuthorizationServer`` calls its storage hooks synchronously, while every query here is
async on the request's session; the rules are RFC 6749/7636 and OIDC Core as Authlib applies them:
PKCE S256 required, redirect URI compared exactly, a code used once (a second use revokes what the
first issued), tokens short-lived with the column as audience.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import errors as oauth_errors
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import lookup_hash
from app_api.core.db import utcnow
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings
from app_api.platform import audit
from app_api.platform.accounts.models import Account
from app_api.platform.openplatform import claims, keys, service
from app_api.platform.openplatform.errors import ConsentExpired, TicketInvalid
from app_api.platform.openplatform.models import AuthCode, AuthTicket, ExternalColumn, IssuedToken
from app_api.platform.openplatform.schemas import SCOPE_NAMES

TICKET_TTL = dt.timedelta(seconds=60)
CODE_TTL = dt.timedelta(minutes=2)
CONSENT_TTL = dt.timedelta(minutes=10)
# A step-up (a real-name check, a face check, a visit to an agent) may take a while: the paused
# request waits this long for the resident to come back with a new ticket.
RESUME_TTL = dt.timedelta(minutes=30)
ACR_LEVELS = {"L0": 0, "L1": 1, "L2": 2, "L3": 3}
SUPPORTED_SCOPES = tuple(SCOPE_NAMES)
# RFC 7636 4.1: a verifier (and an S256 challenge) is 43-128 unreserved characters.
_PKCE_VALUE = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def issuer() -> str:
    return get_settings().public_base_url


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def pairwise_sub(account_id: str, client_id: str) -> str:
    """The subject id a column sees: keyed, so columns cannot join their users by it."""
    return lookup_hash(f"{account_id}:{client_id}", purpose="oidc_sub")[:40]


def acr(level: int) -> str:
    return f"L{level}"


# --- tickets: the app's login carried into the webview -------------------------------------------


async def new_ticket(session: AsyncSession, account_id: str) -> str:
    raw = secrets.token_urlsafe(32)
    session.add(AuthTicket(ticket_hash=_hash(raw), account_id=account_id, expires_at=utcnow() + TICKET_TTL))
    await session.flush()
    return raw


def ticket_hash(raw: str) -> str:
    return _hash(raw)


async def spend_ticket(session: AsyncSession, raw: str) -> str:
    """The account a ticket was issued to; the ticket cannot be used again."""
    res = await session.exec(
        sa.update(AuthTicket)
        .where(
            col(AuthTicket.ticket_hash) == _hash(raw),
            col(AuthTicket.used_at).is_(None),
            col(AuthTicket.expires_at) > utcnow(),
        )
        .values(used_at=utcnow())
    )
    if res.rowcount != 1:
        raise TicketInvalid()
    ticket = await session.get(AuthTicket, _hash(raw))
    assert ticket is not None
    return ticket.account_id


async def spend_decision(session: AsyncSession, ticket_hash: str, account_id: str) -> None:
    """The consent page of this ticket is answered once: a replayed form gets no second code."""
    res = await session.exec(
        sa.update(AuthTicket)
        .where(
            col(AuthTicket.ticket_hash) == ticket_hash,
            col(AuthTicket.account_id) == account_id,
            col(AuthTicket.decided_at).is_(None),
        )
        .values(decided_at=utcnow())
    )
    if res.rowcount != 1:
        raise ConsentExpired()


# --- the authorization request ----------------------------------------------------------------------


class PageError(Exception):
    """Refused before the redirect URI is trusted: shown to the resident, never redirected."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class RedirectError(Exception):
    """Refused after the redirect URI is trusted: sent back to the column as ``error=...``."""

    def __init__(self, error: oauth_errors.OAuth2Error) -> None:
        self.error = error
        super().__init__(error.error)


class UnmetAuthenticationRequirements(oauth_errors.OAuth2Error):  # type: ignore[misc]
    """OpenID Connect Core Unmet Authentication Requirements 1.0: only for an essential ``acr``."""

    error = "unmet_authentication_requirements"


@dataclass(frozen=True)
class AuthRequest:
    column_id: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str
    # The identity level the column asked for in this request (``acr_values`` or an ``acr`` claim
    # request), 0 when it asked for none; ``acr_essential``: asked as an essential claim.
    acr_level: int = 0
    acr_essential: bool = False


def required_level(column: ExternalColumn, req: AuthRequest) -> int:
    """The level a code needs: the column's registered level, or higher if this request asks so."""
    return max(column.identity_level, req.acr_level)


def refusal_for_level(req: AuthRequest, *, declined: bool) -> oauth_errors.OAuth2Error:
    """What the column is told when the resident does not reach the level: the OIDC error for an
    essential ``acr`` claim, ``access_denied`` otherwise (the spec reserves the former)."""
    needed = f"L{req.acr_level}" if req.acr_level else "the column's registered level"
    what = "declined" if declined else "did not complete"
    description = f"identity level {needed} required; the resident {what} the step-up"
    if req.acr_essential:
        return UnmetAuthenticationRequirements(description=description)
    return oauth_errors.AccessDeniedError(description=description)


def _requested_acr(params: dict[str, str]) -> tuple[int, bool]:
    """(level, essential) from ``acr_values`` (OIDC Core 3.1.2.1) and the ``claims`` parameter's
    ``id_token.acr`` (5.5.1.1). Levels nest (L3 satisfies L2), so the lowest value listed suffices.
    Unknown values of a voluntary request are ignored; an essential request with none we know is
    refused as unmet."""
    level, essential = 0, False
    voluntary = [ACR_LEVELS[v] for v in params.get("acr_values", "").split() if v in ACR_LEVELS]
    if voluntary:
        level = min(voluntary)
    raw = params.get("claims")
    if raw:
        try:
            claims = json.loads(raw)
        except ValueError as exc:
            raise RedirectError(
                oauth_errors.InvalidRequestError(description="claims is not valid JSON")
            ) from exc
        id_token = claims.get("id_token") if isinstance(claims, dict) else None
        acr_req = id_token.get("acr") if isinstance(id_token, dict) else None
        if isinstance(acr_req, dict):
            values = acr_req.get("values")
            if not isinstance(values, list):
                values = [acr_req["value"]] if "value" in acr_req else []
            known = [ACR_LEVELS[v] for v in values if isinstance(v, str) and v in ACR_LEVELS]
            essential = acr_req.get("essential") is True
            if essential and values and not known:
                raise RedirectError(
                    UnmetAuthenticationRequirements(description="none of the requested acr values is offered")
                )
            if known:
                level = max(level, min(known))
    return level, essential


# The same refusal of the same token (a column that keeps retrying with a revoked token) is audited
# once per this many seconds, not once per request: the rest are counted in Redis and the next
# audited entry says how many came since (``repeats_since_last``). Other refusals are each audited.
REFUSAL_AUDIT_EVERY_S = 60


async def _refuse(
    session: AsyncSession,
    action: str,
    column: ExternalColumn | None,
    *,
    once_per: str | None = None,
    **data: Any,
) -> None:
    repeats = 0
    if once_per is not None:
        kind = f"openplatform:refused:{action}:{once_per}"
        try:
            r = await get_redis()
            if not await r.set(f"{kind}:audited", b"1", ex=REFUSAL_AUDIT_EVERY_S, nx=True):
                await r.incr(f"{kind}:repeats")
                await r.expire(f"{kind}:repeats", REFUSAL_AUDIT_EVERY_S * 10)
                return
            repeats = int(await r.getdel(f"{kind}:repeats") or 0)
        except Exception:
            repeats = 0  # Redis away: audit every refusal rather than none
    await audit.record(
        session,
        action=action,
        subject_type="external_column",
        subject_id=column.id if column else None,
        data={**data, **({"repeats_since_last": repeats} if repeats else {})},
    )


refuse = _refuse


async def check_request(session: AsyncSession, params: dict[str, str]) -> tuple[ExternalColumn, AuthRequest]:
    """Validate an authorization request (OIDC Core 3.1.2.1 with PKCE required)."""
    column = await service.by_client_id(session, params.get("client_id", ""))
    if column is None:
        await _refuse(session, "openplatform.authorize_refused", None, reason="unknown_client")
        raise PageError("未知的第三方栏目，无法登录。")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in column.redirect_uris:
        # Exact string match: a URI differing by one character is another site.
        await _refuse(session, "openplatform.authorize_refused", column, reason="redirect_uri_mismatch")
        raise PageError("该栏目的回调地址未经登记，为保护您的账号，已停止登录。")
    if not column.enabled:
        await _refuse(session, "openplatform.authorize_refused", column, reason="column_disabled")
        raise PageError("该栏目已停用。")
    if params.get("response_type") != "code":
        raise RedirectError(oauth_errors.UnsupportedResponseTypeError())
    scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
    if "openid" not in scopes:
        raise RedirectError(oauth_errors.InvalidScopeError(description="scope must include openid"))
    not_allowed = [s for s in scopes if s not in column.allowed_scopes or s not in SUPPORTED_SCOPES]
    if not_allowed:
        await _refuse(
            session, "openplatform.authorize_refused", column, reason="scope_not_allowed", scopes=not_allowed
        )
        raise RedirectError(
            oauth_errors.InvalidScopeError(description=f"scope not allowed: {' '.join(not_allowed)}")
        )
    challenge = params.get("code_challenge", "")
    if params.get("code_challenge_method") != "S256" or not _PKCE_VALUE.fullmatch(challenge):
        await _refuse(session, "openplatform.authorize_refused", column, reason="pkce_missing")
        raise RedirectError(oauth_errors.InvalidRequestError(description="PKCE with S256 is required"))
    acr_level, acr_essential = _requested_acr(params)
    return column, AuthRequest(
        column_id=column.id,
        client_id=column.client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=params.get("state"),
        nonce=params.get("nonce"),
        code_challenge=challenge,
        acr_level=acr_level,
        acr_essential=acr_essential,
    )


def _sign(payload: bytes, kind: str = "consent") -> str:
    key = get_settings().secret_key.get_secret_value().encode()
    return hmac.new(key, f"oidc-{kind}:".encode() + payload, hashlib.sha256).hexdigest()


def _request_body(req: AuthRequest, account_id: str, ttl: dt.timedelta) -> dict[str, Any]:
    return {
        "a": account_id,
        "c": req.column_id,
        "i": req.client_id,
        "r": req.redirect_uri,
        "s": list(req.scopes),
        "st": req.state,
        "n": req.nonce,
        "cc": req.code_challenge,
        "al": req.acr_level,
        "ae": req.acr_essential,
        "exp": int((utcnow() + ttl).timestamp()),
    }


def _seal(body: dict[str, Any], kind: str) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode())
    return payload.decode() + "." + _sign(payload, kind)


def _unseal(token: str, kind: str) -> dict[str, Any]:
    payload, _, sig = token.partition(".")
    if not sig or not hmac.compare_digest(sig.encode(), _sign(payload.encode(), kind).encode()):
        raise ConsentExpired()
    try:
        body = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (ValueError, binascii.Error) as exc:
        raise ConsentExpired() from exc
    if not isinstance(body, dict) or body.get("exp", 0) < utcnow().timestamp():
        raise ConsentExpired()
    return body


def consent_token(req: AuthRequest, account_id: str, ticket: str, *, step_up: bool = False) -> str:
    """The consent form's hidden field: the request, the resident and the ticket, signed, short-lived.

    ``step_up``: the form of the step-up page, whose only answer is to decline."""
    return _seal({**_request_body(req, account_id, CONSENT_TTL), "t": ticket, "su": step_up}, "consent")


def resume_token(req: AuthRequest, account_id: str) -> str:
    """A paused request (the resident went to step up), for the same resident to continue with a new
    ticket; signed, 30 minutes. Continuing checks everything again, the level included."""
    return _seal(_request_body(req, account_id, RESUME_TTL), "resume")


def _request_of(body: dict[str, Any]) -> AuthRequest:
    return AuthRequest(
        column_id=body["c"],
        client_id=body["i"],
        redirect_uri=body["r"],
        scopes=tuple(body["s"]),
        state=body["st"],
        nonce=body["n"],
        code_challenge=body["cc"],
        acr_level=int(body.get("al", 0)),
        acr_essential=bool(body.get("ae", False)),
    )


def read_consent_token(token: str) -> tuple[AuthRequest, str, str, bool]:
    """(request, account id, ticket hash, is the step-up page's) from a consent form's field;
    ConsentExpired if forged or old."""
    body = _unseal(token, "consent")
    try:
        return _request_of(body), body["a"], body["t"], bool(body.get("su", False))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConsentExpired() from exc


def read_resume_token(token: str) -> tuple[AuthRequest, str]:
    """(request, account id) of a paused request; ConsentExpired if forged or older than 30 minutes."""
    body = _unseal(token, "resume")
    try:
        return _request_of(body), body["a"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConsentExpired() from exc


async def issue_code(session: AsyncSession, req: AuthRequest, account_id: str) -> str:
    raw = secrets.token_urlsafe(32)
    session.add(
        AuthCode(
            code_hash=_hash(raw),
            column_id=req.column_id,
            account_id=account_id,
            redirect_uri=req.redirect_uri,
            scopes=list(req.scopes),
            code_challenge=req.code_challenge,
            nonce=req.nonce,
            expires_at=utcnow() + CODE_TTL,
        )
    )
    await service.record_grant(
        session, account_id=account_id, column_id=req.column_id, scopes=list(req.scopes)
    )
    column = await session.get(ExternalColumn, req.column_id)
    if column is not None:
        await claims.record_consent(session, account_id=account_id, column=column, scopes=req.scopes)
    return raw


# --- the token endpoint ---------------------------------------------------------------------------


class TokenError(Exception):
    def __init__(self, error: oauth_errors.OAuth2Error) -> None:
        self.error = error
        super().__init__(error.error)


def _invalid_client(description: str) -> oauth_errors.InvalidClientError:
    error = oauth_errors.InvalidClientError(description=description)
    error.status_code = 401  # RFC 6749 5.2: 401 for a client that authenticated (or tried to)
    return error


async def authenticate_client(session: AsyncSession, client_id: str, secret: str) -> ExternalColumn:
    column = await service.by_client_id(session, client_id) if client_id else None
    if column is None or not secret or not service.secret_matches(column, secret):
        await _refuse(session, "openplatform.client_auth_failed", column, client_id=client_id[:64])
        raise TokenError(_invalid_client("client authentication failed"))
    if not column.enabled:
        await _refuse(session, "openplatform.token_refused", column, reason="column_disabled")
        raise TokenError(_invalid_client("column disabled"))
    return column


async def exchange_code(
    session: AsyncSession, column: ExternalColumn, *, code: str, redirect_uri: str, verifier: str
) -> dict[str, Any]:
    """Spend an authorization code: the token response (RFC 6749 5.1 plus ``id_token``)."""
    row = await session.get(AuthCode, _hash(code)) if code else None
    if row is None or row.column_id != column.id:
        await _refuse(session, "openplatform.token_refused", column, reason="unknown_code")
        raise TokenError(oauth_errors.InvalidGrantError(description="unknown code"))
    if row.used_at is not None:
        # A second use means the code leaked: what the first use issued is withdrawn too.
        res = await session.exec(
            sa.update(IssuedToken)
            .where(col(IssuedToken.code_hash) == row.code_hash, col(IssuedToken.revoked_at).is_(None))
            .values(revoked_at=utcnow())
        )
        await _refuse(session, "openplatform.code_reused", column, tokens_revoked=int(res.rowcount or 0))
        raise TokenError(oauth_errors.InvalidGrantError(description="code already used"))
    if row.expires_at <= utcnow():
        await _refuse(session, "openplatform.token_refused", column, reason="code_expired")
        raise TokenError(oauth_errors.InvalidGrantError(description="code expired"))
    # The code is spent by any attempt (compare-and-set), right or wrong, so it cannot be guessed at.
    res = await session.exec(
        sa.update(AuthCode)
        .where(col(AuthCode.code_hash) == row.code_hash, col(AuthCode.used_at).is_(None))
        .values(used_at=utcnow())
    )
    if res.rowcount != 1:
        await _refuse(session, "openplatform.code_reused", column, tokens_revoked=0)
        raise TokenError(oauth_errors.InvalidGrantError(description="code already used"))
    if redirect_uri != row.redirect_uri:
        await _refuse(session, "openplatform.token_refused", column, reason="redirect_uri_mismatch")
        raise TokenError(oauth_errors.InvalidGrantError(description="redirect_uri does not match"))
    if not _PKCE_VALUE.fullmatch(verifier) or not hmac.compare_digest(
        create_s256_code_challenge(verifier).encode(), row.code_challenge.encode()
    ):
        await _refuse(session, "openplatform.token_refused", column, reason="pkce_failed")
        raise TokenError(oauth_errors.InvalidGrantError(description="code_verifier does not match"))
    account = await session.get(Account, row.account_id)
    grant = await service.active_grant(session, account_id=row.account_id, column_id=column.id)
    if account is None or not account.is_active or grant is None:
        raise TokenError(oauth_errors.InvalidGrantError(description="authorization withdrawn"))
    return await _issue(session, column, account, row)


async def _issue(
    session: AsyncSession, column: ExternalColumn, account: Account, code: AuthCode
) -> dict[str, Any]:
    # joserfc (with keys.py) loads with the first token, not in every api worker (issue 19).
    from joserfc import jwt

    now = utcnow()
    exp = now + keys.TOKEN_TTL
    kid, key = await keys.signing_key(session)
    jti = secrets.token_hex(16)
    session.add(
        IssuedToken(
            jti=jti,
            column_id=column.id,
            account_id=account.id,
            code_hash=code.code_hash,
            scopes=code.scopes,
            issued_at=now,
            expires_at=exp,
        )
    )
    sub = pairwise_sub(account.id, column.client_id)
    base = {
        "iss": issuer(),
        "sub": sub,
        "aud": column.client_id,
        "iat": int(now.timestamp()),
        "exp": int(exp.timestamp()),
    }
    header = {"alg": keys.ALG, "kid": kid}
    access = jwt.encode(
        {**header, "typ": "at+jwt"},
        {**base, "jti": jti, "scope": " ".join(code.scopes), "client_id": column.client_id},
        key,
    )
    id_claims: dict[str, Any] = {
        **base,
        "auth_time": int(code.expires_at.timestamp() - CODE_TTL.total_seconds()),
    }
    id_claims["acr"] = acr(account.identity_level)
    if code.nonce:
        id_claims["nonce"] = code.nonce
    id_token = jwt.encode(header, id_claims, key)
    await session.flush()
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(keys.TOKEN_TTL.total_seconds()),
        "scope": " ".join(code.scopes),
        "id_token": id_token,
    }


# --- using an access token --------------------------------------------------------------------------


class BearerError(Exception):
    def __init__(self, error: str, description: str, status: int = 401) -> None:
        self.error, self.description, self.status = error, description, status
        super().__init__(error)


@dataclass(frozen=True)
class TokenUse:
    token: IssuedToken
    column: ExternalColumn
    claims: dict[str, Any]


async def verify_access(session: AsyncSession, raw: str, *, audience: str | None = None) -> TokenUse:
    """A live access token: signature, expiry, not revoked, its column enabled and the grant standing.

    ``audience``: the client the token is presented to; a token of another column is refused.
    """
    from joserfc import jwt
    from joserfc.errors import JoseError

    try:
        token = jwt.decode(raw, await keys.verification_keys(session), algorithms=[keys.ALG])
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer()}, exp={"essential": True}).validate(
            token.claims
        )
    except (JoseError, ValueError) as exc:
        raise BearerError("invalid_token", "token is invalid or expired") from exc
    claims = token.claims
    row = await session.get(IssuedToken, str(claims.get("jti", "")))
    column = await session.get(ExternalColumn, row.column_id) if row else None
    if row is None or column is None:
        raise BearerError("invalid_token", "unknown token")
    if audience is not None and claims.get("aud") != audience:
        await _refuse(
            session, "openplatform.token_wrong_audience", column, once_per=row.jti, presented_to=audience[:64]
        )
        raise BearerError("invalid_token", "token was issued to another column")
    if row.revoked_at is not None or not column.enabled:
        await _refuse(session, "openplatform.revoked_token_used", column, once_per=row.jti)
        raise BearerError("invalid_token", "token revoked")
    grant = await service.active_grant(session, account_id=row.account_id, column_id=column.id)
    if grant is None:
        raise BearerError("invalid_token", "authorization withdrawn")
    return TokenUse(token=row, column=column, claims=claims)


async def userinfo(session: AsyncSession, use: TokenUse) -> dict[str, Any]:
    """Only the claims of the scopes granted to this token (OIDC Core 5.3)."""
    account = await session.get(Account, use.token.account_id)
    if account is None or not account.is_active:
        raise BearerError("invalid_token", "account closed")
    scopes = set(use.token.scopes)
    out: dict[str, Any] = {"sub": use.claims["sub"]}
    if "phone" in scopes:
        out["phone_number"] = "+86" + account.phone
        out["phone_number_verified"] = True
    if "real_name" in scopes and account.real_name:
        out["name"] = account.real_name
    if "identity_level" in scopes:
        out["identity_level"] = account.identity_level
        out["acr"] = acr(account.identity_level)
    out.update(
        await claims.registry_claims(session, account=account, column=use.column, scopes=use.token.scopes)
    )
    return out


def discovery() -> dict[str, Any]:
    base = issuer()
    api = base + "/api/v1/oidc"
    return {
        "issuer": base,
        "authorization_endpoint": api + "/authorize",
        "token_endpoint": api + "/token",
        "userinfo_endpoint": api + "/userinfo",
        "introspection_endpoint": api + "/introspect",
        "jwks_uri": api + "/jwks",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": [keys.ALG],
        "scopes_supported": list(SUPPORTED_SCOPES),
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "phone_number",
            "phone_number_verified",
            "name",
            "identity_level",
            "address",
            "ecertificates",
        ],
        "acr_values_supported": list(ACR_LEVELS),
        "claims_parameter_supported": True,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "ui_locales_supported": ["zh-CN"],
    }
