"""Results posted home for free (免费寄递): the postal service's waybill API behind an adapter.

The protocol is the project's proposed waybill protocol (``docs/adapters/postal.yaml``): JSON over
HTTPS with requests signed as :mod:`app_api.core.signing` says (the signature covers the protocol
path, ``/v1/waybills``, not the deployment's base URL): create a waybill for an order (idempotent
on the order id, so a retried job never ships twice) and query its tracking.
``columns.gov_services.sandbox.postal`` speaks the same protocol on loopback in development.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app_api.core.http import http_client
from app_api.core.signing import signed_headers
from columns.gov_services.config import get_config
from columns.gov_services.errors import PostalError


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
        url = cfg.postal_endpoint + path
        signed = signed_headers(
            app_id=cfg.postal_app_id,
            secret=cfg.postal_secret.get_secret_value(),
            method=method,
            path=path,
            body=body,
        )
        headers = {"content-type": "application/json", **signed.headers}
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
