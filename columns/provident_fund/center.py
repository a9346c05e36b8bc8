"""The provident-fund center adapter: JSON over HTTPS, each request signed by the house convention
(:mod:`app_api.core.signing`). The protocol is this project's proposal (no center publishes one we
know of), written down in ``docs/adapters/provident_fund.yaml``. Errors: unreachable, 5xx or
unreadable answers raise :class:`CenterUnavailable`; an unknown person :class:`FundAccountNotFound`."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from app_api.core.http import http_client
from app_api.core.signing import signed_headers
from columns.provident_fund.config import get_config
from columns.provident_fund.errors import CenterUnavailable, FundAccountNotFound, WithdrawalRefused

log = logging.getLogger(__name__)


class CenterClient:
    async def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        cfg = get_config()
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        signed = signed_headers(
            app_id=cfg.app_id, secret=cfg.secret.get_secret_value(), method="POST", path=path, body=body
        )
        headers = {"content-type": "application/json", **signed.headers}
        try:
            r = await http_client().post(
                cfg.center_endpoint + path, content=body, headers=headers, timeout=cfg.timeout_s
            )
        except httpx.HTTPError as exc:
            log.warning("fund center %s: %s", path, type(exc).__name__)
            raise CenterUnavailable(reason=type(exc).__name__) from exc
        if r.status_code >= 500:
            raise CenterUnavailable(reason=f"http_{r.status_code}")
        try:
            answer = r.json()
            code, data = int(answer["code"]), answer.get("data")
        except (ValueError, KeyError, TypeError) as exc:
            raise CenterUnavailable(reason="unreadable") from exc
        if code == 0 and isinstance(data, dict):
            return data
        if code == 40401:
            raise FundAccountNotFound()
        if code == 42201:
            raise WithdrawalRefused(f"公积金中心答复：{str(answer.get('msg', ''))[:100]}")
        raise CenterUnavailable(reason=f"code_{code}")

    async def person(self, id_number: str) -> dict[str, Any]:
        return await self.call("/v1/person/query", {"id_number": id_number})

    async def contributions(self, account_no: str, months: int) -> list[dict[str, Any]]:
        return list(
            (await self.call("/v1/person/contributions", {"account_no": account_no, "months": months})).get(
                "items", []
            )
        )

    async def loans(self, account_no: str) -> list[dict[str, Any]]:
        return list((await self.call("/v1/person/loans", {"account_no": account_no})).get("items", []))

    async def loan_rule(self) -> dict[str, Any]:
        return await self.call("/v1/rules/loan", {})

    async def withdraw(
        self, *, account_no: str, reason: str, amount_fen: int, bank_account: str, app_ref: str
    ) -> dict[str, Any]:
        return await self.call(
            "/v1/withdrawals",
            {
                "account_no": account_no,
                "reason": reason,
                "amount_fen": amount_fen,
                "bank_account": bank_account,
                "app_ref": app_ref,
            },
        )


def get_center() -> CenterClient:
    return CenterClient()
