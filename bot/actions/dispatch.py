"""The action table, and one call of an action as Rasa's webhook asks for it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot import walkthrough
from bot.actions import guide
from bot.actions.call import Call
from bot.actions.conversation import action_handle_failure, action_session_start
from bot.actions.items import (
    action_answer_item,
    action_ask_application_form_confirm,
    action_ask_item,
    action_start_application,
    validate_application_form,
    validate_item_question_form,
)
from bot.actions.needs import action_find_item
from bot.actions.protocol import ActionResult, NamedResponse, TextMessage
from bot.actions.records import action_application_status, action_nearest_station, action_unpaid_bills
from bot.actions.resolve import resolve
from bot.config import BotSettings
from bot.sender import account_sender_id
from bot.sources import Sources

log = logging.getLogger(__name__)

# By name, as the Rasa domain lists them (bot/rasa/domain.yml, "actions").
ACTIONS: dict[str, Callable[[Call], Awaitable[None]]] = {
    f.__name__: f
    for f in (
        action_session_start,
        action_answer_item,
        action_ask_item,
        action_ask_application_form_confirm,
        validate_item_question_form,
        validate_application_form,
        action_start_application,
        action_find_item,
        action_application_status,
        action_unpaid_bills,
        action_nearest_station,
        action_handle_failure,
    )
}


def _who(tracker: dict[str, Any], settings: BotSettings) -> tuple[str | None, bool]:
    """The account and elderly flag the chat endpoint attached to the latest message, if genuine."""
    meta: dict[str, Any] = {}
    for e in reversed(tracker.get("events") or []):
        if e.get("event") == "user":
            meta = e.get("metadata") or {}
            break
    else:
        meta = (tracker.get("slots") or {}).get("session_started_metadata") or {}
    account_id = meta.get("account_id")
    sender = str(tracker.get("sender_id") or "")
    if account_id and account_sender_id(str(account_id), settings) != sender:
        log.warning("bot: account metadata does not match the sender id; treated as anonymous")
        account_id = None
    return (str(account_id) if account_id else None), bool(meta.get("elderly"))


async def _walk_conditions(call: Call) -> None:
    """After the listed conditions of an item (``ask_conditions``), the walk-through of them
    (:mod:`bot.walkthrough`): its first question replaces the answer's buttons; the chat endpoint
    handles the answers."""
    if guide.aspect(call) != "conditions" or call.sources.session is None:
        return
    name = next(
        (
            e.get("value")
            for e in reversed(call.events)
            if e.get("event") == "slot" and e.get("name") == "item"
        ),
        None,
    )
    res = await resolve(call, str(name)) if name else None
    if res is None or res.item is None:
        return
    replies = await walkthrough.start(
        call.sources.session,
        sender=str(call.tracker.get("sender_id") or ""),
        account_id=call.account_id,
        code=str(res.item.get("code")),
        settings=call.settings,
    )
    if not replies:
        return
    # The answer's own buttons (other questions about the item) would compete with the question's.
    kept: list[TextMessage | NamedResponse] = []
    for r in call.responses:
        kept.append({"text": r["text"]} if "text" in r else r)  # type: ignore[typeddict-item]
    call.responses = kept
    for reply in replies:
        call.say(reply.text, reply.buttons)


async def run_action(body: dict[str, Any], sources: Sources, settings: BotSettings) -> ActionResult:
    """Run one action for Rasa. Raises KeyError for an unknown action, Rejected to reject it."""
    name = str(body.get("next_action") or "")
    handler = ACTIONS[name]
    tracker = body.get("tracker") or {}
    account_id, elderly = _who(tracker, settings)
    call = Call(
        name=name,
        tracker=tracker,
        sources=sources,
        settings=settings,
        account_id=account_id,
        elderly=elderly,
    )
    await handler(call)
    if name == "action_answer_item":
        await _walk_conditions(call)
    # Elderly mode can change mid-conversation. Not from validation actions: any SlotSet they
    # return counts as "the resident answered", which would stop Rasa rejecting the form.
    if not name.startswith(("validate_", "action_session_start")) and bool(call.slot("elderly")) != elderly:
        call.set_slot("elderly", elderly)
    return {"events": call.events, "responses": call.responses}
