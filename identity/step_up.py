"""Step-up tokens: what a passed face check hands out for one account and one named purpose.

``identity.api.require_step_up`` spends them on the endpoints that ask for one.
"""

from __future__ import annotations

import hashlib
import secrets

from app_api.core.redis import get_redis
from identity.config import get_identity_settings


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
