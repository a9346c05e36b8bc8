"""The jobs infrastructure's own table (the outbox) and its relay task."""

from app_api.core.component import Component
from app_api.core.jobs import models, outbox

component = Component(name="app_api.core.jobs", models=(models,), tasks=(outbox,))
