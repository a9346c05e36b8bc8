"""The conditions walk-through: a few questions, one at a time with buttons, that end in whether the
resident qualifies for an item and why, exactly the materials that apply, and (logged in) an
application draft with the answers in it, handed over by deep link. The draft is short-lived
(``bot.drafts``): removed after ``WOJIA_BOT_WALKTHROUGH_DRAFT_TTL_S`` unless the resident opens it.

The action webhook starts it when the resident asks about an item's conditions (``ask_conditions``:
:func:`start`, called by the dispatch after ``action_answer_item``). The chat endpoint then handles
the answers itself, without the NLU (:func:`handle`): a button payload ``/walkthrough{...}`` or a
typed reply that matches the question's options ("是", "不是", "不确定", a number). Any other
message leaves the walk-through ("不用了" ends it; a new question is answered by Rasa as usual).

What the questions are and what the answers mean is the catalogue's business, through the
:class:`~app_api.platform.capabilities.ConditionsGuide` capability
(``columns/gov_services/assist.py``): the assistant never sees
the rules, and the catalogue's own rules engine gives the verdict (a rule without its data: "needs a
reviewer", never passed). Questions the resident's verified data answers (age from the ID number)
are not asked.

State: one ``bot_walkthrough`` row per conversation (sender id), answers encrypted, expiring
:data:`TTL_S` after the last turn. A row in the database, not Redis: it must survive a restart and a
wiped Redis mid-walk-through, and the draft it ends in is written in the same transaction anyway.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_str, encrypt_str
from app_api.core.db import lock_for_writing, savepoint, utcnow
from app_api.core.errors import AppError
from app_api.platform.capabilities import ConditionsGuide, lookup
from bot import drafts
from bot.config import BotSettings
from bot.models import BotWalkthrough

log = logging.getLogger(__name__)

# A walk-through left unanswered this long has lapsed: a late answer starts nothing.
TTL_S = 15 * 60
PAYLOAD = "/walkthrough"
_PAYLOAD = re.compile(r"^/walkthrough(.*)$", re.S)
LAPSED = "这次条件核对已结束或超时，没有记录您的回答。想再核对的话，请再问我一次这个事项需要什么条件。"
STOP_WORDS = {"不用了", "算了", "取消", "退出", "结束", "不问了", "不用", "不要了"}
# Typed replies for the yes/no options (the buttons' own titles match too).
_TYPED = {
    "yes": {"是", "是的", "对", "对的", "有", "符合", "满了", "已满", "嗯", "好"},
    "no": {"不是", "否", "没有", "不符合", "不对", "没满", "未满", "无"},
    "unsure": {"不确定", "不知道", "不清楚", "不晓得", "说不清"},
}


@dataclass
class Reply:
    text: str
    buttons: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class State:
    code: str
    name: str
    questions: list[dict[str, Any]]
    answers: dict[str, str] = field(default_factory=dict)

    @property
    def current(self) -> dict[str, Any] | None:
        return next((q for q in self.questions if q["key"] not in self.answers), None)


def _aad(row_id: str) -> str:
    return f"bot_walkthrough_state:{row_id}"


def _load(row: BotWalkthrough) -> State:
    raw = json.loads(decrypt_str(row.state_enc, aad=_aad(row.id)))
    return State(code=raw["code"], name=raw["name"], questions=raw["questions"], answers=raw["answers"])


def _store(row: BotWalkthrough, state: State) -> None:
    raw = {"code": state.code, "name": state.name, "questions": state.questions, "answers": state.answers}
    row.state_enc = encrypt_str(json.dumps(raw, ensure_ascii=False), aad=_aad(row.id))
    row.updated_at = utcnow()
    row.expires_at = row.updated_at + dt.timedelta(seconds=TTL_S)


def _payload(row_id: str, key: str, value: str) -> str:
    return PAYLOAD + json.dumps({"w": row_id, "q": key, "a": value}, ensure_ascii=False)


def _question(row_id: str, state: State) -> Reply:
    q = state.current
    assert q is not None
    n = list(state.questions).index(q) + 1
    total = len(state.questions)
    prefix = f"（{n}/{total}）" if total > 1 else ""
    return Reply(
        prefix + q["text"], [(o["title"], _payload(row_id, q["key"], o["value"])) for o in q["options"]]
    )


def guide() -> ConditionsGuide | None:
    return lookup(ConditionsGuide)


async def _clear(session: AsyncSession, sender: str) -> None:
    await session.exec(delete(BotWalkthrough).where(col(BotWalkthrough.sender) == sender))


async def start(
    session: AsyncSession,
    *,
    sender: str,
    account_id: str | None,
    code: str,
    settings: BotSettings,
) -> list[Reply] | None:
    """Begin the walk-through of item ``code`` for this conversation (replacing any earlier one):
    the first question, or at once the verdict when nothing needs asking. None: the catalogue
    offers no walk-through (the listed conditions stand as the answer)."""
    g = guide()
    if g is None:
        return None
    plan = await g.questions(code, account_id=account_id, session=session)
    if plan is None:
        return None
    now = utcnow()
    # Lapsed walk-throughs of anyone: an anonymous conversation may never come back.
    await session.exec(delete(BotWalkthrough).where(col(BotWalkthrough.expires_at) < now))
    await _clear(session, sender)
    state = State(code=plan["code"], name=plan["name"], questions=list(plan["questions"]))
    known = [Reply(f"已根据您实名认证的信息核对：{'；'.join(plan['known'])}。")] if plan["known"] else []
    if state.current is None:
        return known + await _finish(session, state, account_id=account_id, row_id=None, settings=settings)
    row = BotWalkthrough(sender=sender, account_id=account_id, item_code=state.code, state_enc=b"")
    _store(row, state)
    session.add(row)
    await session.flush()
    intro = Reply(
        f"我来帮您逐项核对“{state.name}”的申请条件，共{len(state.questions)}个问题，随时可以说“不用了”结束。"
    )
    return [*known, intro, _question(row.id, state)]


def _typed_answer(text: str, q: dict[str, Any]) -> str | None:
    """The option value a typed reply picks for question ``q`` (None: it is not an answer)."""
    words = text.strip().rstrip("。.!！")
    if q.get("number"):
        try:
            number = Decimal(words)
        except InvalidOperation:
            return None
        return words if number.is_finite() else None
    for o in q["options"]:
        if words == o["title"]:
            return str(o["value"])
    values = {str(o["value"]) for o in q["options"]}
    for value, typed in _TYPED.items():
        if value in values and words in typed:
            return value
    return None


async def handle(
    session: AsyncSession, *, sender: str, account_id: str | None, text: str, settings: BotSettings
) -> tuple[list[Reply], bool]:
    """A message while a walk-through may be pending: ``(replies, handled)``. Handled: an answer
    (the next question or the verdict), a stop, or a stale button. Not handled: no walk-through, or a
    message that is no answer (the walk-through is left and committed, the caller asks Rasa; the
    replies then say the walk-through ended)."""
    m = _PAYLOAD.match(text)
    query = select(BotWalkthrough).where(col(BotWalkthrough.sender) == sender)
    row = (await session.exec(query)).first()
    if row is not None:
        # Two taps at once (a double tap, two devices) answer one after the other: the second finds
        # its question answered. SQLite ignores FOR UPDATE, hence the write lock before the re-read.
        await lock_for_writing(session)
        locked = query.with_for_update().execution_options(populate_existing=True)
        row = (await session.exec(locked)).first()
    if row is not None and row.expires_at <= utcnow():
        await session.delete(row)
        await session.commit()
        row = None
    if m is not None:
        try:
            sent = json.loads(m.group(1))
        except ValueError:
            sent = None
        if row is None:
            return [Reply(LAPSED)], True
        state = _load(row)
        q = state.current
        values = {str(o["value"]) for o in q["options"]} if q is not None else set()
        if (
            q is None
            or not isinstance(sent, dict)
            or sent.get("w") != row.id
            or q["key"] != sent.get("q")
            or str(sent.get("a")) not in values
        ):
            # A button of an earlier walk-through or of a question already answered (a double tap),
            # or a payload not of ours: the open question again, nothing recorded.
            return ([_question(row.id, state)] if q is not None else []), True
        replies = await _answer(session, row, state, str(sent["a"]), account_id=account_id, settings=settings)
        return replies, True
    if row is None:
        return [], False
    state = _load(row)
    q = state.current
    if text.strip().rstrip("。.!！") in STOP_WORDS:
        await session.delete(row)
        return [Reply(f"好的，已结束“{state.name}”的条件核对。还有别的需要可以随时问我。")], True
    value = _typed_answer(text, q) if q is not None else None
    if value is not None:
        return await _answer(session, row, state, value, account_id=account_id, settings=settings), True
    # A new question or a change of mind: the walk-through ends, the message goes to the NLU. Committed
    # now: the action webhook (another request, during the Rasa call) may start a new walk-through.
    await session.delete(row)
    await session.commit()
    return [Reply(f"好的，先不核对“{state.name}”的条件了。")], False


async def _answer(
    session: AsyncSession,
    row: BotWalkthrough,
    state: State,
    value: str,
    *,
    account_id: str | None,
    settings: BotSettings,
) -> list[Reply]:
    q = state.current
    assert q is not None
    state.answers[q["key"]] = value
    if state.current is not None:
        _store(row, state)
        session.add(row)
        return [_question(row.id, state)]
    row_id = row.id
    await session.delete(row)
    return await _finish(session, state, account_id=account_id, row_id=row_id, settings=settings)


_STATUS = {"met": "✔", "unmet": "✘", "unknown": "？"}


def _which(check: dict[str, Any]) -> str:
    """Which of the item's listed conditions a rule's check decides (a listed condition asked as
    such is its own text already)."""
    n, text = check.get("condition"), check.get("condition_text")
    if not n or not text or text == check["explain"]:
        return ""
    return f"（受理条件第{n}条：{text}）"


def _hours(seconds: int) -> str:
    return f"{seconds // 3600}小时" if seconds % 3600 == 0 else f"{max(1, seconds // 60)}分钟"


async def _finish(
    session: AsyncSession, state: State, *, account_id: str | None, row_id: str | None, settings: BotSettings
) -> list[Reply]:
    """The verdict and why, the materials that apply, and the hand-over."""
    g = guide()
    assessed = (
        await g.assess(state.code, account_id=account_id, answers=state.answers, session=session)
        if g
        else None
    )
    if assessed is None:
        return [Reply(f"事项“{state.name}”暂时无法核对，请稍后再试，或拨打 {settings.hotline} 热线咨询。")]
    name = assessed["name"]
    verdict = assessed["verdict"]
    head = {
        "met": f"根据核对，您符合“{name}”的申请条件：",
        "unmet": f"根据核对，您暂不符合“{name}”的申请条件：",
        "review": f"根据核对，您没有明显不符合“{name}”的条件，以下几项将由工作人员审核：",
    }[verdict]
    lines = [f"{_STATUS[c['status']]} {c['explain']}：{c['reason']}{_which(c)}" for c in assessed["checks"]]
    if not assessed["checks"] and verdict != "review":
        lines = []
    lines += [f"？ {text}：需工作人员审核" for text in assessed["review"]]
    replies = [Reply(head + ("\n" + "\n".join(lines) if lines else ""))]
    if verdict == "unmet":
        replies.append(
            Reply(
                f"如对条件有疑问，可以拨打 {settings.hotline} 热线咨询。",
                [("重新核对条件", f"/ask_conditions{json.dumps({'item': name}, ensure_ascii=False)}")],
            )
        )
        return replies
    mats = assessed["materials"]
    body = "\n".join(f"{i}. {m}" for i, m in enumerate(mats, 1))
    replies.append(
        Reply(f"按您的情况，需要准备：\n{body}" if mats else f"按您的情况，办理“{name}”不需要提交材料。")
    )
    if account_id is None:
        replies.append(
            Reply(
                "一键申报需要先登录。登录后再问我一次这个事项的条件，核对完即可一键申报，系统会自动带出您的信息。",
                [("去登录", settings.login_link)],
            )
        )
        return replies
    # One draft per walk-through, whatever is retried; with nothing asked, one per item and day.
    key = f"bot-walkthrough-{row_id or state.code + '-' + utcnow().strftime('%Y%m%d')}"
    assert g is not None
    try:
        async with savepoint(session):
            draft = await g.draft(
                state.code, account_id=account_id, answers=state.answers, client_key=key, session=session
            )
    except AppError as e:
        log.info("bot: walk-through draft refused: %s", e.code)
        replies.append(Reply(f"暂时无法为您生成申请草稿：{e.detail or e.title}"))
        return replies
    # Short-lived: removed unless the resident opens it or takes it up in the app (bot.drafts).
    await drafts.record(
        session,
        application_id=str(draft["id"]),
        account_id=account_id,
        item_code=state.code,
        settings=settings,
    )
    replies.append(
        Reply(
            f"已为您生成“{name}”的申请草稿（编号 {draft['number']}），带入了您刚才的回答。"
            "点“一键申报”继续，授权后系统会自动填好个人信息。"
            f"草稿保留{_hours(settings.walkthrough_draft_ttl_s)}，期间没有打开将自动删除。",
            [("一键申报", drafts.draft_link(str(draft["id"]), settings))],
        )
    )
    return replies
