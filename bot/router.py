"""The assistant's HTTP endpoints: the chat API for residents and the action webhook for Rasa.

The lead includes ``router`` under ``/api/v1``.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import JSONResponse

from app_api.core.db import SessionDep, utcnow
from app_api.core.http import http_client
from app_api.core.redis import get_redis
from app_api.platform.access import OptionalAccount, public
from bot import walkthrough
from bot.actions.call import Rejected
from bot.actions.dispatch import run_action
from bot.actions.protocol import ActionRejected, ActionResult
from bot.config import BotSettings, get_bot_settings
from bot.errors import (
    ActionTokenInvalid,
    AssistantStarting,
    AssistantUnavailable,
    ChatRateLimited,
    UnknownAction,
)
from bot.pinyin import to_chinese
from bot.schemas import ChatReply, ChatRequest, ReplyButton, ReplyMessage
from bot.sender import account_sender_id, anonymous_sender_id
from bot.sources import Sources

log = logging.getLogger(__name__)
router = APIRouter(prefix="/bot", tags=["assistant"])

Settings = Annotated[BotSettings, Depends(get_bot_settings)]
_SPACES = re.compile(r"\s+")
# Spaces between two Chinese characters (老年 证) split what jieba would keep as one word.
_CJK_SPACE = re.compile(r"(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])")
# Markup is not what a resident means (a pasted page, a probe): tags are dropped before NLU, so
# they are neither parsed nor echoed back in an answer ("没有找到“<script>…”").
_TAG = re.compile(r"<[^<>]{0,500}>")
# Format characters (zero-width spaces and joiners, direction marks) carry no words.
_FORMAT = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# Letters (any script), digits or Chinese characters: without one, a message has no words at all.
_WORDY = re.compile(r"[^\W_]")
NO_WORDS_REPLY = "抱歉，我只看得懂文字。请用一句话告诉我您想办什么事，比如“老年证要带什么材料”。"


def starting_phase(settings: BotSettings) -> str | None:
    """What the assistant's start script is doing ("training", "loading"), or None: no start under
    way (no state file, or its process is gone, i.e. the start failed or Rasa stopped since)."""
    if not settings.state_file:
        return None
    try:
        phase, pid = Path(settings.state_file).read_text(encoding="utf-8").split()
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return None
    return phase if phase in ("training", "loading") else None


def _unavailable(settings: BotSettings) -> AssistantUnavailable:
    phase = starting_phase(settings)
    if phase is None:
        return AssistantUnavailable()
    detail = "正在训练对话模型" if phase == "training" else "正在加载对话模型"
    return AssistantStarting(f"智能助手{detail}，请稍后再试", retry_after=settings.starting_retry_after_s)


def normalize_message(text: str) -> str:
    """Drop markup and format characters, collapse whitespace; drop spaces between Chinese characters
    (a phone keyboard's habit)."""
    text = _FORMAT.sub("", _TAG.sub(" ", text))
    return _CJK_SPACE.sub("", _SPACES.sub(" ", text).strip())


async def _limit(kind: str, who: str, per_minute: int) -> None:
    """Count one message of ``who`` in the current minute; 429 past ``per_minute``.

    A fixed window in Redis (INCR + EXPIRE NX in one transaction), as the other limits of the app:
    Redis holds no truth here, a wiped Redis only restarts the window."""
    r = await get_redis()
    now = int(utcnow().timestamp())
    key = f"bot:rate:{kind}:{who}:{now // 60}"
    async with r.pipeline(transaction=True) as p:
        p.incr(key)
        p.expire(key, 60, nx=True)
        count, _ = await p.execute()
    if int(count) > per_minute:
        raise ChatRateLimited(retry_after=60 - now % 60)


@router.post(
    "/messages",
    response_model=ChatReply,
    response_model_exclude_none=True,
    responses={429: {"description": "发送过于频繁（每个账号、每个地址每分钟有上限）"}},
)
async def send_message(
    body: ChatRequest, request: Request, principal: OptionalAccount, settings: Settings, session: SessionDep
) -> ChatReply:
    """Send one message to the assistant and get its replies (logged in or anonymous).

    Pinyin and mixed Chinese/pinyin/English are turned into Chinese before the NLU sees them
    (:mod:`bot.pinyin`); a message without any words (emoji only, bare markup) is answered at once.
    Each account and each client address may send a limited number of messages a minute (429
    ``bot.rate_limited`` with Retry-After)."""
    client = request.client.host if request.client else "unknown"
    await _limit("ip", client, settings.messages_per_ip_per_minute)
    conversation_id: str | None = None
    metadata: dict[str, Any] = {}
    if principal is not None:
        await _limit("account", principal.id, settings.messages_per_account_per_minute)
        sender = account_sender_id(principal.id, settings)
        metadata = {"account_id": principal.id, "elderly": principal.elderly_mode}
    else:
        conversation_id = body.conversation_id or secrets.token_urlsafe(16)
        sender = anonymous_sender_id(conversation_id, settings)
        metadata = {"elderly": bool(body.elderly)}
    text = normalize_message(body.message)
    if not _WORDY.search(text):
        return ChatReply(messages=[ReplyMessage(text=NO_WORDS_REPLY)], conversation_id=conversation_id)
    # A pending conditions walk-through takes its answers (buttons or typed) without the NLU.
    walked, handled = await walkthrough.handle(
        session,
        sender=sender,
        account_id=principal.id if principal is not None else None,
        text=text,
        settings=settings,
    )
    before = [_reply(r) for r in walked]
    if handled:
        return ChatReply(messages=before, conversation_id=conversation_id)
    sources = Sources(session)
    typed = text
    text = normalize_message(await to_chinese(text, lambda q: sources.search(q, limit=3)))
    if text != typed:
        text = await _rescue(text, sources, settings)
    payload = {"sender": sender, "message": text, "metadata": metadata}
    url = settings.rasa_url.rstrip("/") + "/webhooks/rest/webhook"
    try:
        r = await http_client().post(url, json=payload, timeout=settings.rasa_timeout_s)
    except httpx.HTTPError as e:
        log.warning("bot: Rasa unreachable at %s: %s", settings.rasa_url, type(e).__name__)
        raise _unavailable(settings) from e
    if r.status_code != 200:
        log.warning("bot: Rasa answered %s", r.status_code)
        raise _unavailable(settings)
    try:
        raw = r.json()
    except ValueError as e:
        raise AssistantUnavailable() from e
    messages: list[ReplyMessage] = before
    for m in raw if isinstance(raw, list) else []:
        text = m.get("text")
        buttons = [
            ReplyButton(title=str(b.get("title", "")), payload=str(b.get("payload", "")))
            for b in m.get("buttons") or []
        ]
        if text or buttons:
            messages.append(ReplyMessage(text=text or "", buttons=buttons or None))
    _offer_a_person(messages, logged_in=principal is not None, settings=settings)
    return ChatReply(messages=messages, conversation_id=conversation_id)


def _reply(r: walkthrough.Reply) -> ReplyMessage:
    buttons = [ReplyButton(title=t, payload=p) for t, p in r.buttons]
    return ReplyMessage(text=r.text, buttons=buttons or None)


# A question turned from pinyin into Chinese reads differently from what the model learnt ("社会保障卡
# 申领怎么办" instead of "社保卡怎么办"). When the model then finds no intent (or a greeting or
# goodbye: "shebao ka zen me ban" once got "再见") but the message names a catalogue item clearly,
# the question is sent as the intent its words say, with the item.
_RESCUED_INTENTS = {"out_of_scope", "nlu_fallback", "goodbye", "greet", "chitchat"}
_ASPECT_WORDS = (
    ("ask_materials", ("材料", "证件", "带什么", "准备什么")),
    ("ask_fee", ("多少钱", "收费", "费用", "钱")),
    ("ask_time_limit", ("多久", "多长时间", "几天", "时间")),
    ("ask_location", ("在哪", "哪里", "哪儿", "地点", "地址")),
    ("ask_online", ("网上", "线上", "在线")),
    ("ask_conditions", ("条件", "资格")),
    ("start_application", ("申请", "申报")),
)


async def _rescue(text: str, sources: Sources, settings: BotSettings) -> str:
    """``text``, or an intent payload for it when the model cannot read it but it names an item."""
    from bot.actions.mention import text_mentions
    from bot.pinyin import CLEAR_MARGIN, ITEM_SCORE

    try:
        url = settings.rasa_url.rstrip("/") + "/model/parse"
        r = await http_client().post(url, json={"text": text}, timeout=settings.rasa_timeout_s)
        intent = ((r.json() or {}).get("intent") or {}).get("name") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return text  # the chat call itself says what is wrong with Rasa
    if intent not in _RESCUED_INTENTS:
        return text
    for mention in text_mentions(text):
        hits = await sources.search(mention, limit=3)
        top = float(hits[0].get("score", 0)) if hits else 0.0
        second = float(hits[1].get("score", 0)) if len(hits) > 1 else 0.0
        if top >= ITEM_SCORE and top - second >= CLEAR_MARGIN:
            asked = next((i for i, words in _ASPECT_WORDS if any(w in text for w in words)), "inform")
            log.info("bot: a converted message read as %s by the model, sent as %s", intent, asked)
            return f"/{asked}" + json.dumps({"item": str(hits[0].get("name"))}, ensure_ascii=False)
    return text


def _offer_a_person(messages: list[ReplyMessage], *, logged_in: bool, settings: BotSettings) -> None:
    """Where the assistant refers the resident to the hotline (handing off: "转人工", failures in a
    row), it also offers an online consultation that staff answer (bot.tickets); anonymous residents
    log in first, since the answer comes to their account."""
    for m in messages:
        if settings.hotline in m.text and not m.buttons:
            offer = ("在线咨询（工作人员答复）", settings.ticket_link) if logged_in else (
                "登录后在线咨询", settings.login_link)  # fmt: skip
            m.buttons = [
                ReplyButton(title=offer[0], payload=offer[1]),
                ReplyButton(title=f"拨打 {settings.hotline}", payload=f"tel:{settings.hotline}"),
            ]
            return


def _check_token(authorization: str | None, settings: BotSettings) -> None:
    expected = "Bearer " + settings.action_token.get_secret_value()
    if not authorization or not hmac.compare_digest(authorization.encode(), expected.encode()):
        raise ActionTokenInvalid()


@router.post(
    "/actions",
    dependencies=[Depends(public)],
    include_in_schema=False,
    response_model=ActionResult,
    responses={400: {"model": ActionRejected}},
)
async def run_bot_action(
    body: Annotated[dict[str, Any], Body()],
    session: SessionDep,
    settings: Settings,
    authorization: Annotated[str | None, Header()] = None,
) -> ActionResult | JSONResponse:
    """Rasa's action-server protocol; Rasa authenticates with the shared bearer token."""
    _check_token(authorization, settings)
    name = str(body.get("next_action") or "")
    try:
        return await run_action(body, Sources(session), settings)
    except KeyError as e:
        if e.args and e.args[0] == name:
            raise UnknownAction(f"未知的助手动作：{name}") from e
        raise
    except Rejected as e:
        rejected: ActionRejected = {"action_name": e.action_name, "error": e.error}
        return JSONResponse(rejected, status_code=400)
