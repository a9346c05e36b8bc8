"""The conversation itself: starting a session, and handing off after repeated failures."""

from __future__ import annotations

from bot.actions.call import Call, intent_of

FAILURE_INTENTS = {"out_of_scope", "nlu_fallback"}


async def action_handle_failure(call: Call) -> None:
    """Count failed turns in a row (off-topic or not understood); at two, hand off to the hotline."""
    failures = 0
    for e in reversed(call.user_events()):
        if intent_of(e) in FAILURE_INTENTS:
            failures += 1
        else:
            break
    if failures >= 2:
        call.utter("utter_handoff")


async def action_session_start(call: Call) -> None:
    call.events.append({"event": "session_started", "timestamp": None})
    call.set_slot("elderly", call.elderly)
    call.events.append({"event": "action", "timestamp": None, "name": "action_listen"})
