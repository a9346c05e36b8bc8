"""Settings an agent changes for a resident within a mandate's "settings" scope."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal, invalidate
from app_api.platform.agents import errors
from app_api.platform.agents.mandates import act_for


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
