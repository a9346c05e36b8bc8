"""What an action hands back to Rasa (the action-server protocol, Rasa 3.6).

Only the events and responses our actions produce: ``slot`` (SlotSet), ``session_started`` and
``action`` (ActionExecuted) events; text messages with optional buttons, and named responses from
the domain. Rasa reads ``timestamp: null`` as "now".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict


class SlotSet(TypedDict):
    event: Literal["slot"]
    timestamp: None
    name: str
    value: Any


class SessionStarted(TypedDict):
    event: Literal["session_started"]
    timestamp: None


class ActionExecuted(TypedDict):
    event: Literal["action"]
    timestamp: None
    name: str


Event = Annotated[SlotSet | SessionStarted | ActionExecuted, Field(discriminator="event")]


class Button(TypedDict):
    title: str
    payload: str


class TextMessage(TypedDict):
    text: str
    buttons: NotRequired[list[Button]]


class NamedResponse(TypedDict):
    """A response of the domain (``utter_...``), rendered by Rasa."""

    response: str


class ActionResult(TypedDict):
    events: list[Event]
    responses: list[TextMessage | NamedResponse]


class ActionRejected(TypedDict):
    """HTTP 400: the action refuses to run; Rasa's policies choose another action."""

    action_name: str
    error: str
