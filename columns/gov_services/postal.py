"""Results posted home for free (免费寄递): the postal service's waybill API behind an adapter.

The protocol is EMS-style JSON over HTTPS with HMAC-SHA256 signed requests: create a waybill for
an order (idempotent on the order id, so a retried job never ships twice) and query its tracking.
``columns.gov_services.sandbox`` speaks the same protocol on loopback for development and tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from app_api.core.http import http_client
from columns.gov_services.config import get_config
from columns.gov_services.errors import PostalError


def sign(secret: str, method: str, path: str, body: bytes, ts: str, nonce: str) -> str:
    msg = "\n".join([method.upper(), path, ts, nonce, hashlib.sha256(body).hexdigest()]).encode()
    return base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class WaybillResult:
    tracking_no: str
    fee_fen: int


@dataclass(frozen=True)
class Tracking:
    status: str  # created, in_transit, delivered
    events: list[dict[str, Any]]


class HttpPostal:
    async def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = get_config()
        body = json.dumps(payload, ensure_ascii=False).encode() if payload is not None else b""
        ts, nonce = str(int(time.time())), secrets.token_hex(8)
        url = cfg.postal_url.rstrip("/") + path
        # The signature covers the full path, as the carrier sees it behind any prefix.
        full_path = httpx.URL(url).path
        headers = {
            "content-type": "application/json",
            "x-app-id": cfg.postal_app_id,
            "x-timestamp": ts,
            "x-nonce": nonce,
            "x-signature": sign(cfg.postal_secret.get_secret_value(), method, full_path, body, ts, nonce),
        }
        try:
            resp = await http_client().request(method, url, content=body or None, headers=headers)
            data: dict[str, Any] = resp.json()
        except Exception as e:
            raise PostalError("邮政寄递服务暂时无法访问") from e
        if resp.status_code != 200 or data.get("code") != "0":
            raise PostalError(
                "邮政寄递服务返回错误", upstream_code=data.get("code"), upstream_msg=data.get("msg")
            )
        result: dict[str, Any] = data.get("data") or {}
        return result

    async def create_waybill(
        self, *, order_id: str, receiver: dict[str, str], sender: str, goods: str
    ) -> WaybillResult:
        d = await self._call(
            "POST",
            "/v1/waybills",
            {
                "order_id": order_id,
                "sender": {"name": sender},
                "receiver": receiver,
                "goods": goods,
                "payment": "sender_monthly",
            },
        )
        return WaybillResult(tracking_no=str(d["tracking_no"]), fee_fen=int(d.get("fee_fen", 0)))

    async def track(self, tracking_no: str) -> Tracking:
        d = await self._call("GET", f"/v1/waybills/{tracking_no}")
        return Tracking(status=str(d["status"]), events=list(d.get("events", [])))


def get_postal() -> HttpPostal:
    return HttpPostal()
