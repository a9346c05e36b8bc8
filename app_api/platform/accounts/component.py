"""Accounts: SMS and staff login, tokens, profiles; the SMS sandbox's inbox in development.

Start-up checks the SMS templates (login codes need them): outside development a message kind
without an approved template, or with other parameters, refuses to start (``sms.startup_check``)."""

from fastapi import APIRouter

from app_api.core.component import API_PREFIX, Component, Mount, Sandbox
from app_api.platform import sms
from app_api.platform.accounts import models, router


def _sms_inbox() -> APIRouter:
    from app_api.platform.accounts.sandbox.sms_inbox import router as inbox

    return inbox


component = Component(
    name="app_api.platform.accounts",
    routers=(Mount(router.router),),
    sandboxes=(Sandbox(API_PREFIX, _sms_inbox),),
    models=(models,),
    startup=sms.startup_check,
)
