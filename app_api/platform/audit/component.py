"""The tamper-evident audit chain."""

from app_api.core.component import Component, Mount
from app_api.platform.audit import models, router

component = Component(name="app_api.platform.audit", routers=(Mount(router.router),), models=(models,))
