"""The action table, and one call of an action as Rasa's webhook asks for it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

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
from bot.actions.protocol import ActionResult
from bot.actions.records import action_application_status, action_nearest_station, action_unpaid_bills
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
    # Elderly mode can change mid-conversation. Not from validation actions: any SlotSet they
    # return counts as "the resident answered", which would stop Rasa rejecting the form.
    if not name.startswith(("validate_", "action_session_start")) and bool(call.slot("elderly")) != elderly:
        call.set_slot("elderly", elderly)
    return {"events": call.events, "responses": call.responses}
