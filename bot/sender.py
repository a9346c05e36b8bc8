"""Rasa's sender id for a resident: a keyed hash of the account id, never the phone number.

Rasa keeps conversations by sender id in its tracker store; it must not learn who the resident is.
An anonymous resident is identified by a conversation id the client keeps (hashed the same way).
"""

from __future__ import annotations

import hashlib
import hmac

from bot.config import BotSettings


def _mac(kind: str, value: str, settings: BotSettings) -> str:
    key = settings.sender_key.get_secret_value().encode()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def account_sender_id(account_id: str, settings: BotSettings) -> str:
    return "u" + _mac("account", account_id, settings)


def anonymous_sender_id(conversation_id: str, settings: BotSettings) -> str:
    return "a" + _mac("anonymous", conversation_id, settings)
