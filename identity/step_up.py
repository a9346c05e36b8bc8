"""Step-up tokens: what a passed face check, or an agent's in-person check, hands out for one
account and one named purpose.

``identity.api.require_step_up`` spends them on the endpoints that ask for one. The in-person way
(for residents who cannot or will not use a face check): the resident opens a request for a
purpose on their phone and shows it to an agent at a station; the agent, holding the resident's
mandate, checks the ID card in person and approves the request (``identity.attestation``); the
resident's phone then collects the token, exactly as a face check would have handed it out.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.errors import IdentityLevelRequired
from app_api.core.redis import get_redis
from app_api.platform.accounts.principal import Principal
from identity import errors
from identity.attempts import bump, day
from identity.config import get_identity_settings
from identity.models import IdentityAttempt
from identity.purposes import check_purpose

# An in-person request waits this long for the agent (the resident is at the counter).
IN_PERSON_REQUEST_TTL_S = 600
# In-person requests one resident may open per day (China time).
IN_PERSON_REQUESTS_PER_DAY = 10
IN_PERSON_KIND = "agent_step_up"


def _step_up_key(account_id: str, purpose: str, token: str) -> str:
    return f"identity:stepup:{account_id}:{purpose}:{hashlib.sha256(token.encode()).hexdigest()}"


async def issue_step_up(account_id: str, purpose: str) -> str:
    token = secrets.token_urlsafe(32)
    r = await get_redis()
    await r.set(_step_up_key(account_id, purpose, token), b"1", ex=get_identity_settings().step_up_ttl_s)
    return token


async def consume_step_up(account_id: str, purpose: str, token: str) -> bool:
    """True once: for this account, this purpose, within its 5 minutes. The key holds all three,
    so a token for another purpose or another account is simply not found (and not spent)."""
    r = await get_redis()
    return bool(await r.delete(_step_up_key(account_id, purpose, token)) == 1)


@dataclass(frozen=True)
class InPersonRequest:
    """A resident's pending request for an in-person step-up, as kept in Redis."""

    account_id: str
    purpose: str


def _request_key(request_id: str) -> str:
    # Only the hash is kept: a Redis dump does not hold ids that could be shown to an agent.
    return f"identity:stepup_req:{hashlib.sha256(request_id.encode()).hexdigest()}"


async def open_in_person_request(principal: Principal, purpose: str) -> str:
    """A request id (shown to the agent, e.g. as a QR code) valid 10 minutes, for an L3 resident."""
    check_purpose(purpose)
    if principal.identity_level < 3:
        raise IdentityLevelRequired(
            3, principal.identity_level, "现场核验用于已完成 L3 认证的居民，请先到服务站办理身份核验"
        )
    count, reset_in = await bump(f"identity:stepup_reqs:{principal.id}:{day()}")
    if count > IN_PERSON_REQUESTS_PER_DAY:
        raise errors.StepUpRequestLimit(retry_after=reset_in)
    request_id = secrets.token_urlsafe(18)
    r = await get_redis()
    payload = json.dumps({"account_id": principal.id, "purpose": purpose})
    await r.set(_request_key(request_id), payload, ex=IN_PERSON_REQUEST_TTL_S)
    return request_id


async def load_in_person_request(request_id: str) -> InPersonRequest | None:
    r = await get_redis()
    raw = await r.get(_request_key(request_id))
    if raw is None:
        return None
    data = json.loads(raw)
    return InPersonRequest(account_id=str(data["account_id"]), purpose=str(data["purpose"]))


async def approve_in_person_request(request_id: str, attempt_id: str) -> bool:
    """Mark the request approved by the agent's passed check ``attempt_id``; False if it already was."""
    r = await get_redis()
    ttl = get_identity_settings().step_up_ttl_s
    return bool(await r.set(_request_key(request_id) + ":approved", attempt_id, ex=ttl, nx=True))


async def claim_in_person_step_up(
    session: AsyncSession, *, account_id: str, request_id: str
) -> tuple[str, str]:
    """(purpose, step-up token for it) of an approved request, handed out once.

    The approval is honoured only when the agent's passed check is in the database (its transaction
    committed, audit line included), so a token is never handed out for an unrecorded check.
    """
    req = await load_in_person_request(request_id)
    if req is None or req.account_id != account_id:
        # Another resident's request is as unknown to this one as an expired one.
        raise errors.StepUpRequestExpired()
    r = await get_redis()
    approved_key = _request_key(request_id) + ":approved"
    raw = await r.get(approved_key)
    if raw is None:
        raise errors.StepUpRequestPending()
    attempt_id = raw.decode() if isinstance(raw, bytes) else str(raw)
    attempt = await session.get(IdentityAttempt, attempt_id)
    if (
        attempt is None
        or attempt.kind != IN_PERSON_KIND
        or attempt.outcome != "passed"
        or attempt.account_id != account_id
        or attempt.purpose != req.purpose
    ):
        raise errors.StepUpRequestPending()
    # SET NX: of two concurrent claims exactly one gets the token; later ones are told "used".
    if not await r.set(approved_key + ":claimed", b"1", ex=IN_PERSON_REQUEST_TTL_S, nx=True):
        raise errors.StepUpRequestUsed()
    return req.purpose, await issue_step_up(account_id, req.purpose)
