"""Notifications to residents: one service for SMS and WeChat subscription messages.

Packages and columns register a template per event (``register_template``) and call ``send()`` inside
their transaction. The message is stored at once (the resident's in-app inbox) and delivered after
commit through the outbox, by the first channel that can reach the resident:

- WeChat subscription messages (registered by ``miniprogram_bridge.channel``) when the template has a
  WeChat layout, the resident's mini-program openid is bound and they hold a one-time subscribe grant
  for that event (``wx.requestSubscribeMessage``: each "accept" allows one message);
- SMS otherwise (urgent messages always reach SMS, whatever the preferences say).

Per-resident preferences switch channels and categories off and set quiet hours; a non-urgent
message due inside quiet hours is deferred to their end, never dropped. A channel that refuses a
message for good (``ChannelError.permanent``: a rejected template, no grant, a stale address) hands it
to the next channel at once; a passing failure is retried on the same channel with backoff by the
sweep that runs every minute, up to the channel's cap, then the next channel; when every channel
failed the message is ``failed``, final. Delivery is claimed per message (``claimed_until``) and per
channel (one ``app_notification_dispatch`` row per message and channel, taken before the call), so a
message goes out on a channel at most once, even when two workers hold it; every call is recorded
(``app_notification_attempt``).

Modules: ``templates`` (one per event), ``models`` (tables), ``channels`` (SMS; others register),
``preferences`` (quiet hours, grants), ``sending`` (``send``), ``delivery`` (claim, try, record),
``tasks`` (the deliver job and the sweep), ``inbox`` and ``router`` (the endpoints), ``component``.
What other packages use is exported here: ``from app_api.platform import notify`` then
``notify.register_template(...)``, ``notify.send(...)``.
"""

from __future__ import annotations

from app_api.platform.notify.channels import Channel, ChannelError, register_channel
from app_api.platform.notify.component import component
from app_api.platform.notify.delivery import deliver_now
from app_api.platform.notify.models import Notification, NotificationAttempt, NotifyPreference
from app_api.platform.notify.preferences import preference_of, quiet_until, record_subscription
from app_api.platform.notify.sending import post, preference_read, send
from app_api.platform.notify.settings import get_notify_settings
from app_api.platform.notify.tasks import sweep
from app_api.platform.notify.templates import TemplateSpec, register_template, templates

__all__ = [
    "Channel",
    "ChannelError",
    "Notification",
    "NotificationAttempt",
    "NotifyPreference",
    "TemplateSpec",
    "component",
    "deliver_now",
    "get_notify_settings",
    "post",
    "preference_of",
    "preference_read",
    "quiet_until",
    "record_subscription",
    "register_channel",
    "register_template",
    "send",
    "sweep",
    "templates",
]
