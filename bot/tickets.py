"""A human when the assistant cannot help: online consultation tickets answered by staff.

When the assistant refers a resident to the 12345 hotline ("转人工", a second failure in a row), the
chat reply also offers an online consultation (a button; anonymous residents are asked to log in
first). ``POST /bot/tickets`` stores the resident's question with the conversation so far (read
from Rasa's tracker for this resident's sender id: the latest turns), encrypted. Reviewers and
administrators list open tickets and answer them (``/bot/staff/tickets``); the resident is notified
(template ``bot.ticket_answered``) and reads the answer in ``GET /bot/tickets``.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_str, encrypt_str
from app_api.core.db import SessionDep, utcnow
from app_api.core.errors import Conflict, NotFound
from app_api.core.http import http_client
from app_api.platform import notify
from app_api.platform.access import CurrentAccount, require_roles
from app_api.platform.accounts.principal import Principal
from bot.config import BotSettings, get_bot_settings
from bot.models import BotTicket
from bot.sender import account_sender_id

log = logging.getLogger(__name__)
router = APIRouter(prefix="/bot", tags=["assistant"])
Staff = Annotated[Principal, Depends(require_roles("reviewer", "admin"))]
Settings = Annotated[BotSettings, Depends(get_bot_settings)]

# The latest turns of the conversation a ticket carries.
TRANSCRIPT_TURNS = 20
ANSWER_EXCERPT = 60

notify.register_template("bot.ticket_answered", "您在智能助手提交的在线咨询已有答复：$excerpt")


class TicketNotFound(NotFound):
    code = "bot.ticket_not_found"
    title = "未找到该在线咨询"


class TicketAnswered(Conflict):
    code = "bot.ticket_answered"
    title = "该在线咨询已经答复过了"


class TicketIn(BaseModel):
    question: str = Field(min_length=1, max_length=500, description="想咨询的问题")


class AnswerIn(BaseModel):
    answer: str = Field(min_length=1, max_length=2000, description="工作人员的答复")


class Turn(BaseModel):
    who: Literal["resident", "assistant"]
    text: str


class TicketOut(BaseModel):
    id: str
    status: Literal["open", "answered"]
    question: str
    transcript: list[Turn]
    answer: str | None = None
    created_at: Any
    answered_at: Any = None


class TicketsOut(BaseModel):
    tickets: list[TicketOut]


def _aad(ticket_id: str) -> str:
    return f"bot_ticket_conversation:{ticket_id}"


def ticket_out(t: BotTicket) -> TicketOut:
    conv = json.loads(decrypt_str(t.conversation_enc, aad=_aad(t.id)))
    return TicketOut(
        id=t.id,
        status=t.status,
        question=conv["question"],
        transcript=[Turn.model_validate(x) for x in conv["transcript"]],
        answer=t.answer,
        created_at=t.created_at,
        answered_at=t.answered_at,
    )


async def transcript_of(sender: str, settings: BotSettings) -> list[dict[str, str]]:
    """The latest turns of the resident's conversation, from Rasa's tracker ([] when Rasa is down)."""
    url = f"{settings.rasa_url.rstrip('/')}/conversations/{sender}/tracker"
    try:
        r = await http_client().get(url, params={"include_events": "ALL"}, timeout=settings.rasa_timeout_s)
        events = r.json().get("events") or [] if r.status_code == 200 else []
    except (httpx.HTTPError, ValueError) as e:
        log.warning("bot: no transcript for a ticket (%s)", type(e).__name__)
        return []
    turns = [
        {"who": "resident" if e["event"] == "user" else "assistant", "text": str(e["text"])}
        for e in events
        if e.get("event") in ("user", "bot") and e.get("text")
    ]
    return turns[-TRANSCRIPT_TURNS:]


async def _own(session: AsyncSession, principal: Principal, ticket_id: str) -> BotTicket:
    t = await session.get(BotTicket, ticket_id)
    if t is None or t.account_id != principal.id:
        raise TicketNotFound()
    return t


@router.post("/tickets", status_code=201)
async def create_ticket(
    body: TicketIn, principal: CurrentAccount, session: SessionDep, settings: Settings
) -> TicketOut:
    """Ask staff: the question and the conversation with the assistant so far go to a reviewer."""
    turns = await transcript_of(account_sender_id(principal.id, settings), settings)
    t = BotTicket(account_id=principal.id, conversation_enc=b"")
    conv = {"question": body.question.strip(), "transcript": turns}
    t.conversation_enc = encrypt_str(json.dumps(conv, ensure_ascii=False), aad=_aad(t.id))
    session.add(t)
    await session.commit()
    return ticket_out(t)


@router.get("/tickets")
async def my_tickets(principal: CurrentAccount, session: SessionDep) -> TicketsOut:
    """The resident's consultations, newest first, with staff's answers."""
    rows = await session.exec(
        select(BotTicket)
        .where(BotTicket.account_id == principal.id)
        .order_by(col(BotTicket.created_at).desc())
        .limit(50)
    )
    return TicketsOut(tickets=[ticket_out(t) for t in rows])


@router.get("/tickets/{ticket_id}")
async def my_ticket(ticket_id: str, principal: CurrentAccount, session: SessionDep) -> TicketOut:
    return ticket_out(await _own(session, principal, ticket_id))


@router.get("/staff/tickets")
async def staff_tickets(
    staff: Staff,
    session: SessionDep,
    status: Annotated[Literal["open", "answered"], Query(description="状态")] = "open",
) -> TicketsOut:
    """Reviewers and administrators: consultations to answer (oldest first) or answered (newest first)."""
    order = col(BotTicket.created_at).asc() if status == "open" else col(BotTicket.answered_at).desc()
    rows = await session.exec(select(BotTicket).where(BotTicket.status == status).order_by(order).limit(100))
    return TicketsOut(tickets=[ticket_out(t) for t in rows])


@router.post("/staff/tickets/{ticket_id}/answer")
async def answer_ticket(ticket_id: str, body: AnswerIn, staff: Staff, session: SessionDep) -> TicketOut:
    """Answer a consultation once; the resident is notified."""
    t = await session.get(BotTicket, ticket_id, with_for_update=True)
    if t is None:
        raise TicketNotFound()
    if t.status != "open":
        raise TicketAnswered()
    answer = body.answer.strip()
    t.status, t.answer, t.answered_by, t.answered_at = "answered", answer, staff.id, utcnow()
    session.add(t)
    excerpt = answer if len(answer) <= ANSWER_EXCERPT else answer[:ANSWER_EXCERPT] + "…"
    params = {"excerpt": excerpt}
    await notify.send(session, account_id=t.account_id, template="bot.ticket_answered", params=params)
    await session.commit()
    return ticket_out(t)
