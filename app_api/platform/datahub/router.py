from __future__ import annotations

from fastapi import APIRouter

from app_api.core.db import SessionDep
from app_api.core.paging import CursorQuery, LimitQuery
from app_api.platform.access import CurrentAccount
from app_api.platform.datahub.schemas import DataAccessList
from app_api.platform.datahub.service import reads_of

router = APIRouter(tags=["datahub"])


@router.get("/me/data-access")
async def my_data_access(
    principal: CurrentAccount, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = 50
) -> DataAccessList:
    """Who read this resident's records at the city data center, for what, on which consent; newest
    first, page on with ``cursor`` = the previous page's ``next_cursor``."""
    items, next_cursor = await reads_of(session, principal.id, cursor=cursor, limit=limit)
    return DataAccessList(items=items, next_cursor=next_cursor)
