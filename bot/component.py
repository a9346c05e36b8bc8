"""The assistant: the chat endpoint, Rasa's action webhook, consultation tickets for staff, and the
deep links of the drafts its conditions walk-throughs hand over (with their expiry sweep)."""

from app_api.core.component import Component, Mount
from bot import drafts, models, router, tasks, tickets

component = Component(
    name="bot",
    routers=(Mount(router.router), Mount(tickets.router), Mount(drafts.router)),
    tasks=(tasks,),
    models=(models,),
)
