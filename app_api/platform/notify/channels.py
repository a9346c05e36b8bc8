"""Delivery channels: SMS here; others (the mini-program bridge's WeChat channel) register themselves."""

from __future__ import annotations

from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.errors import UpstreamError
from app_api.platform.notify.models import Notification
from app_api.platform.notify.templates import TemplateSpec
from app_api.platform.sms import get_sms


class ChannelError(Exception):
    """A channel failed to deliver.

    Permanent (``permanent``: this message will never go out on this channel, so the next channel is
    tried at once): ``refused`` when this resident cannot get it here at all (no grant, unsubscribed,
    a wrong or stale address; a channel with grants has this resident's grant cleared), or
    ``retryable=False`` when the message itself is refused (a rejected template, invalid data).
    Otherwise transient (network, the provider busy or rate limited): the same channel is tried again
    after the backoff, up to the channel's cap, then the next channel.
    """

    def __init__(self, code: str, message: str, *, retryable: bool = True, refused: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable and not refused
        self.refused = refused

    @property
    def permanent(self) -> bool:
        return not self.retryable


class Channel(Protocol):
    name: str
    # True: each message uses up one of the resident's grants for the event (WeChat one-time subscribe).
    needs_subscription: bool

    def supports(self, spec: TemplateSpec) -> bool: ...

    async def address(self, session: AsyncSession, account_id: str) -> str | None:
        """Where to send (phone, openid), or None when the resident is not reachable this way."""
        ...

    async def deliver(self, address: str, notification: Notification, spec: TemplateSpec) -> str:
        """Send one message; return the provider's message id; raise ChannelError on failure."""
        ...


class SmsChannel:
    name = "sms"
    needs_subscription = False

    def supports(self, spec: TemplateSpec) -> bool:
        return True

    async def address(self, session: AsyncSession, account_id: str) -> str | None:
        from app_api.platform.accounts.models import Account

        account = await session.get(Account, account_id)
        return account.phone if account is not None and account.is_active else None

    async def deliver(self, address: str, notification: Notification, spec: TemplateSpec) -> str:
        try:
            # The gateway sends the template's parameters in the order its approved template declares.
            return await get_sms().send(
                address, notification.template, notification.params, text=notification.text
            )
        except UpstreamError as e:  # sms.SmsFailed and any gateway's upstream failure
            raise ChannelError(
                f"sms.{e.extra.get('upstream_code', 'upstream')}",
                str(e.extra.get("upstream_message") or e.detail),
                retryable=bool(e.extra.get("retryable", True)),
            ) from e
        except (OSError, TimeoutError) as e:
            raise ChannelError("sms.unreachable", str(e) or type(e).__name__) from e


# Other channels register themselves when their component is imported (the mini-program bridge's
# WeChat channel): the wiring imports every component in the api and the worker alike.
_channels: dict[str, Channel] = {"sms": SmsChannel()}


def register_channel(channel: Channel) -> None:
    _channels[channel.name] = channel


def channels() -> dict[str, Channel]:
    return _channels
