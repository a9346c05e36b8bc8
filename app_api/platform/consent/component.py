"""Residents' consents."""

from app_api.core.component import Component, Mount
from app_api.platform.consent import models, router

component = Component(name="app_api.platform.consent", routers=(Mount(router.router),), models=(models,))
