"""Short-lived drafts: the application draft a conditions walk-through hands over by deep link.

The walk-through (``bot.walkthrough``) ends, for a logged-in resident who may apply, in a
gov_services draft with the answers in it and a deep link ``wojia://bot/drafts/<id>``
(``BotSettings.draft_link``). The draft is the resident's to take up, not to collect:

- it is recorded here (``bot_walkthrough_draft``) with ``expires_at`` =
  ``WOJIA_BOT_WALKTHROUGH_DRAFT_TTL_S`` (24 h) after it was made;
- opening the deep link (``GET /api/v1/bot/drafts/{id}``) in time stops the clock and answers where
  the application is; so does taking it up in the app (the sweep finds it submitted or changed and
  keeps it);
- the sweep (:func:`sweep`, job ``bot.expire_walkthrough_drafts`` every 10 minutes through the
  PostgreSQL-ticked schedules, nothing in Redis) removes the drafts past their time through the
  catalogue (``ConditionsGuide.discard_draft``: only an untouched draft is removed). Each row is
  locked and checked again before anything is removed, so two sweeps (two schedulers, a retried job)
  remove a draft once and the second finds nothing to do;
- the deep link of a removed draft answers 410 ``bot.draft_expired`` with a Chinese title and what
  to do; the tombstone row is purged :data:`TOMBSTONE_DAYS` later (then: 404).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import SessionDep, lock_for_writing, sessionmaker, utcnow
from app_api.platform.access import CurrentAccount
from bot.config import BotSettings, get_bot_settings
from bot.errors import DraftExpired, DraftNotFound
from bot.models import BotWalkthroughDraft

log = logging.getLogger(__name__)
router = APIRouter(prefix="/bot", tags=["assistant"])

# How long the deep link of a removed draft still says "expired" rather than "not found".
TOMBSTONE_DAYS = 30
# Drafts one sweep handles at most (the next run takes the rest).
SWEEP_BATCH = 200
APPLICATION_LINK = "wojia://columns/gov_services/applications/{id}"
EXPIRED_DETAIL = (
    "智能助手为您生成的申请草稿在有效期内没有打开，已自动删除，您的回答没有保留。"
    "如需申请，请再问一次智能助手这个事项需要什么条件，核对后会重新生成草稿；也可以在事项页面直接申请。"
)
_TABLE: sa.Table = BotWalkthroughDraft.__table__  # type: ignore[attr-defined]


async def record(
    session: AsyncSession, *, application_id: str, account_id: str, item_code: str, settings: BotSettings
) -> dt.datetime | None:
    """Start the clock of a draft the walk-through just handed over (in the caller's transaction).
    The same draft handed over again (the same walk-through retried, or asked again the same day)
    keeps its row: a draft already opened stays opened, one not opened yet gets a new full term.
    Returns when it expires (None: it does not)."""
    now = utcnow()
    expires_at = now + dt.timedelta(seconds=settings.walkthrough_draft_ttl_s)
    values = {
        "application_id": application_id,
        "account_id": account_id,
        "item_code": item_code,
        "created_at": now,
        "expires_at": expires_at,
    }
    dialect = (await session.connection()).dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_TABLE)
    await session.exec(insert.values(**values).on_conflict_do_nothing(index_elements=["application_id"]))
    row = await session.get(BotWalkthroughDraft, application_id, populate_existing=True)
    if row is not None and row.discarded_at is None and row.expires_at is not None:
        # Handed over again before anyone opened it: the clock starts again.
        row.expires_at = max(row.expires_at, expires_at)
        session.add(row)
        await session.flush()
    elif row is not None and row.discarded_at is not None:
        # Removed earlier and made again under the same key (the same item asked the same day): a
        # fresh draft, a fresh clock.
        row.discarded_at = None
        row.opened_at = None
        row.created_at = now
        row.expires_at = expires_at
        session.add(row)
        await session.flush()
    return row.expires_at if row is not None else None


def _guide() -> Any:
    from bot.walkthrough import guide

    return guide()


async def _expire_one(session: AsyncSession, application_id: str, now: dt.datetime) -> str | None:
    """Remove one draft past its time, if it still is: ``removed``, ``kept`` (taken up), ``gone``, or
    None (not due any more: opened, or handled by another sweep). The caller commits."""
    await lock_for_writing(session)
    locked = (
        select(BotWalkthroughDraft)
        .where(col(BotWalkthroughDraft.application_id) == application_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = (await session.exec(locked)).first()
    if row is None or row.discarded_at is not None or row.expires_at is None or row.expires_at > now:
        return None
    g = _guide()
    if g is None:
        return None  # the catalogue is not offered here: nothing can be removed, try again later
    outcome = str(await g.discard_draft(application_id, account_id=row.account_id, session=session))
    if outcome == "kept":
        row.expires_at = None  # the resident took it up in the app: it is an ordinary draft now
    else:
        row.discarded_at = now
    session.add(row)
    return outcome


async def sweep(now: dt.datetime | None = None) -> dict[str, int]:
    """Remove the walk-through drafts past their time that nobody took up, and purge old
    tombstones. Idempotent: run twice at once, each draft is removed once."""
    now = now or utcnow()
    counts = {"removed": 0, "kept": 0, "gone": 0, "purged": 0}
    async with sessionmaker()() as session:
        due = (
            await session.exec(
                select(BotWalkthroughDraft.application_id)
                .where(
                    col(BotWalkthroughDraft.expires_at) <= now,
                    col(BotWalkthroughDraft.discarded_at).is_(None),
                )
                .order_by(col(BotWalkthroughDraft.expires_at))
                .limit(SWEEP_BATCH)
            )
        ).all()
    for application_id in due:
        async with sessionmaker()() as session:
            outcome = await _expire_one(session, application_id, now)
            await session.commit()
        if outcome is not None:
            counts[outcome] += 1
    async with sessionmaker()() as session:
        purged = await session.exec(
            delete(BotWalkthroughDraft).where(
                col(BotWalkthroughDraft.discarded_at) < now - dt.timedelta(days=TOMBSTONE_DAYS)
            )
        )
        counts["purged"] = purged.rowcount or 0
        await session.commit()
    if counts["removed"] or counts["kept"]:
        log.info("bot: walk-through drafts swept: %s", counts)
    return counts


class DraftOut(BaseModel):
    application_id: str
    # Where the app goes next: the application itself (status as the catalogue keeps it there).
    deep_link: str
    opened_at: dt.datetime


@router.get(
    "/drafts/{application_id}",
    responses={
        404: {"description": "没有这份草稿，或不是您的"},
        410: {"description": "草稿未在有效期内打开，已删除（bot.draft_expired）"},
    },
)
async def open_draft(application_id: str, principal: CurrentAccount, session: SessionDep) -> DraftOut:
    """The deep link of a walk-through's draft: opening it in time keeps the draft (no expiry any
    more) and answers the application to go to; past its time, 410 ``bot.draft_expired``."""
    now = utcnow()
    await lock_for_writing(session)
    locked = (
        select(BotWalkthroughDraft)
        .where(col(BotWalkthroughDraft.application_id) == application_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = (await session.exec(locked)).first()
    if row is None or row.account_id != principal.id:
        raise DraftNotFound()
    if row.discarded_at is None and row.expires_at is not None and row.expires_at <= now:
        # Past its time and not swept yet: removed now, as the sweep would.
        await session.rollback()
        async with sessionmaker()() as own:
            await _expire_one(own, application_id, now)
            await own.commit()
        row = await session.get(BotWalkthroughDraft, application_id, populate_existing=True)
        if row is None:
            raise DraftExpired(EXPIRED_DETAIL)
    if row.discarded_at is not None:
        raise DraftExpired(EXPIRED_DETAIL)
    if row.opened_at is None:
        row.opened_at = now
    row.expires_at = None
    session.add(row)
    await session.commit()
    opened = row.opened_at
    assert opened is not None
    return DraftOut(
        application_id=application_id,
        deep_link=APPLICATION_LINK.format(id=application_id),
        opened_at=opened,
    )


def draft_link(application_id: str, settings: BotSettings | None = None) -> str:
    return (settings or get_bot_settings()).draft_link.format(id=application_id)
