"""The assistant: the chat endpoint and Rasa's action webhook."""

from app_api.core.component import Component, Mount
from bot import router

component = Component(name="bot", routers=(Mount(router.router),))
