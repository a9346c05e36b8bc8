"""One action call: the tracker as Rasa sent it, who is asking, and what the action answers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.actions.protocol import Event, NamedResponse, TextMessage
from bot.config import BotSettings
from bot.sources import Sources


class Rejected(Exception):
    """The action refuses to run (Rasa then lets its policies choose another action)."""

    def __init__(self, action_name: str, error: str) -> None:
        super().__init__(error)
        self.action_name = action_name
        self.error = error


@dataclass
class Call:
    """One action call: the tracker as Rasa sent it, plus who is asking."""

    name: str
    tracker: dict[str, Any]
    sources: Sources
    settings: BotSettings
    account_id: str | None = None
    elderly: bool = False
    events: list[Event] = field(default_factory=list)
    responses: list[TextMessage | NamedResponse] = field(default_factory=list)

    # --- reading the tracker ---------------------------------------------------------------
    def slot(self, name: str) -> Any:
        return (self.tracker.get("slots") or {}).get(name)

    @property
    def latest(self) -> dict[str, Any]:
        return self.tracker.get("latest_message") or {}

    @property
    def intent(self) -> str | None:
        return (self.latest.get("intent") or {}).get("name")

    @property
    def text(self) -> str:
        return str(self.latest.get("text") or "")

    @property
    def active_loop(self) -> str | None:
        return (self.tracker.get("active_loop") or {}).get("name")

    def gap_s(self) -> float:
        """Seconds the resident was silent before the latest message: from the turn before it (the
        assistant's last words, or the resident's previous message) to it. 0 when unknown."""
        events = self.tracker.get("events") or []
        latest: float | None = None
        for e in reversed(events):
            if e.get("event") not in ("user", "bot") or not isinstance(e.get("timestamp"), (int, float)):
                continue
            if latest is None:
                if e.get("event") == "user":
                    latest = float(e["timestamp"])
                continue
            return max(0.0, latest - float(e["timestamp"]))
        return 0.0

    def slot_before_latest(self, name: str) -> Any:
        """The slot's value before the latest message (Rasa fills entity slots as soon as a message
        arrives: "居住证要带什么材料" at a confirmation has already set ``item`` to 居住证)."""
        events = self.tracker.get("events") or []
        last_user = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=len(events))
        seen = False
        value: Any = None
        for e in events[:last_user]:
            if e.get("event") == "slot" and e.get("name") == name:
                seen, value = True, e.get("value")
        return value if seen else self.slot(name)

    def user_events(self) -> list[dict[str, Any]]:
        return [e for e in self.tracker.get("events") or [] if e.get("event") == "user"]

    # --- answering -------------------------------------------------------------------------
    def say(self, text: str, buttons: list[tuple[str, str]] | None = None) -> None:
        msg: TextMessage = {"text": text}
        if buttons:
            limit = self.settings.elderly_max_entries if self.elderly else 5
            msg["buttons"] = [{"title": t, "payload": p} for t, p in buttons[:limit]]
        self.responses.append(msg)

    def utter(self, response: str) -> None:
        self.responses.append({"response": response})

    def set_slot(self, name: str, value: Any) -> None:
        self.events.append({"event": "slot", "timestamp": None, "name": name, "value": value})

    def short(self, entries: list[str]) -> tuple[list[str], int]:
        """Elderly mode keeps the first few entries; returns them and how many were left out."""
        if not self.elderly or len(entries) <= self.settings.elderly_max_entries:
            return entries, 0
        n = self.settings.elderly_max_entries
        return entries[:n], len(entries) - n


def intent_payload(intent: str, **entities: str) -> str:
    """A button payload Rasa parses without NLU: ``/intent{"entity": "value"}``."""
    return f"/{intent}" + (json.dumps(entities, ensure_ascii=False) if entities else "")


def intent_of(event: dict[str, Any]) -> str | None:
    """The intent NLU gave a ``user`` event of the tracker."""
    name = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
    return None if name is None else str(name)
