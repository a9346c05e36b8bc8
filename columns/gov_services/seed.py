"""Demo data for ``wojia seed``: the shipped departments and item catalogue."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from columns.gov_services import catalogue_store


async def seed(session: AsyncSession) -> str:
    return await catalogue_store.seed(session)
