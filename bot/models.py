"""The assistant's tables: consultation tickets handed to staff when the assistant cannot help, and
conditions walk-throughs under way."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import encrypted_column
from app_api.core.db import created_at_field, datetime_field, new_id
from app_api.platform.accounts.closure import POLICY, Delete


class BotTicket(SQLModel, table=True):
    """An online consultation: the resident's question and the conversation that led to it, answered
    by a staff member (a reviewer or an administrator) through the staff API."""

    __tablename__ = "bot_ticket"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    # {"question": str, "transcript": [{"who": "resident" | "assistant", "text": str}, ...]} as JSON,
    # encrypted under this row's id (residents may tell the assistant about themselves).
    conversation_enc: bytes = Field(
        sa_type=sa.LargeBinary,
        sa_column_kwargs=encrypted_column("bot_ticket_conversation:{id}", form="json"),
    )
    status: str = Field(default="open", max_length=10, index=True)  # open | answered
    answer: str | None = Field(default=None, max_length=2000)
    # The staff member who answered (kept as an id: the ticket is the resident's, not theirs).
    answered_by: str | None = Field(default=None, max_length=32)
    created_at: dt.datetime = created_at_field()
    answered_at: dt.datetime | None = datetime_field()


# What closing the resident's account does with their tickets (app_api.platform.accounts.closure).
POLICY.setdefault("bot_ticket", Delete("您向智能助手提交的在线咨询及工作人员的答复"))


class BotWalkthrough(SQLModel, table=True):
    """A conditions walk-through under way in one conversation (``bot.walkthrough``): the item, its
    questions and the answers so far, until the verdict or :data:`bot.walkthrough.TTL_S` of silence."""

    __tablename__ = "bot_walkthrough"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    # Rasa's sender id (a keyed hash of the account or of the anonymous conversation): one pending
    # walk-through per conversation.
    sender: str = Field(max_length=40, unique=True)
    # Logged-in residents only (anonymous conversations have none).
    account_id: str | None = Field(default=None, foreign_key="app_account.id", index=True, max_length=32)
    item_code: str = Field(max_length=40)
    # {"code", "name", "questions": [...], "answers": {key: value}} as JSON, encrypted under this
    # row's id (the answers are about the resident: age bracket, household, family).
    state_enc: bytes = Field(
        sa_type=sa.LargeBinary,
        sa_column_kwargs=encrypted_column("bot_walkthrough_state:{id}", form="json"),
    )
    updated_at: dt.datetime = created_at_field()
    expires_at: dt.datetime = datetime_field(nullable=False, index=True)


POLICY.setdefault("bot_walkthrough", Delete("您与智能助手进行中的条件核对及您的回答"))


class BotWalkthroughDraft(SQLModel, table=True):
    """An application draft a walk-through handed over (``bot.walkthrough``), short-lived: unless the
    resident opens it through the assistant's deep link (``GET /api/v1/bot/drafts/{id}``) or takes
    it up in the app (submits, fills, uploads), the expiry sweep (``bot.tasks``) removes it once
    ``expires_at`` passes, through the catalogue (``ConditionsGuide.discard_draft``). The row stays
    as a tombstone for a while so the deep link can say the draft expired rather than "not found".

    Its own table rather than ``bot_walkthrough``: that row is the conversation's pending walk-through
    (one per sender, replaced by the next one), while a resident may hold several drafts from several
    walk-throughs; the gov_services draft itself stays an ordinary draft (its tables are untouched)."""

    __tablename__ = "bot_walkthrough_draft"

    # The gov_services application id (no foreign key: the column's tables are its own business).
    application_id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    item_code: str = Field(max_length=40)
    created_at: dt.datetime = created_at_field()
    # None once the draft no longer expires (opened through the deep link, or taken up in the app).
    expires_at: dt.datetime | None = datetime_field(index=True)
    opened_at: dt.datetime | None = datetime_field()
    # Set when the sweep removed the draft; the row is purged :data:`bot.drafts.TOMBSTONE_DAYS` later.
    discarded_at: dt.datetime | None = datetime_field(index=True)


POLICY.setdefault("bot_walkthrough_draft", Delete("智能助手为您生成的申请草稿的有效期记录"))
