from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app_api.core.db import SessionDep
from columns.notices.models import Notice
from columns.notices.service import get_notice


async def _published(notice_id: str, session: SessionDep) -> Notice:
    return await get_notice(session, notice_id=notice_id)


PublishedNotice = Annotated[Notice, Depends(_published)]
