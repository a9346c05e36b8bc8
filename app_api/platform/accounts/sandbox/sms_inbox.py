"""The SMS sandbox's inbox: the messages ``SandboxSms`` recorded for a phone (development only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app_api.core.errors import NotFound
from app_api.core.settings import get_settings
from app_api.platform.access import public
from app_api.platform.sms import SandboxSms, get_sms

router = APIRouter(tags=["development"])


class SmsInbox(BaseModel):
    phone: str
    messages: list[dict[str, Any]]


@router.get("/dev/sms", dependencies=[Depends(public)])
async def dev_sms(phone: str) -> SmsInbox:
    """Development only: the messages the SMS sandbox recorded for a phone."""
    gw = get_sms()
    if not get_settings().is_dev or not isinstance(gw, SandboxSms):
        raise NotFound()
    return SmsInbox(phone=phone, messages=await gw.inbox(phone))
