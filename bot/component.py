"""The assistant: the chat endpoint, Rasa's action webhook, and consultation tickets for staff."""

from app_api.core.component import Component, Mount
from bot import models, router, tickets

component = Component(name="bot", routers=(Mount(router.router), Mount(tickets.router)), models=(models,))
