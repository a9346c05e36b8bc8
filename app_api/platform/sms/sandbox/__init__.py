"""Protocol sandboxes of the SMS providers (development and tests only; left out of the built wheel).

``tencent``: Tencent Cloud API 3.0 (TC3-HMAC-SHA256 signed JSON POST), ``SendSms`` 2021-01-11.
``aliyun``: Aliyun OpenAPI (ACS3-HMAC-SHA256, as the official SDK signs by default), ``SendSms``
2017-05-25. Each verifies the signature, holds its approved templates (their text, as in the
provider's console) and records what a phone would have received; each SDK talks to it over HTTP
on loopback (``WOJIA_SMS_ENDPOINT=127.0.0.1:<port>``, ``WOJIA_SMS_SCHEME=http``). Both providers'
SDKs post to ``/``, so a sandbox is served on its own port rather than under the app.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Delivered:
    """One message as the phone would show it."""

    phone: str
    template: str
    params: list[str] | dict[str, str]
    text: str
