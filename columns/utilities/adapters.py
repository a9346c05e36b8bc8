"""Biller adapters: the narrow contract between the column and a water, power or gas company.

An adapter answers three questions — does this account exist under this holder's name, what is
outstanding on it, and "record this payment" — and raises :class:`BillerUnavailable` when the
biller cannot be reached or answers something unreadable (retryable), or a specific domain error
when it refuses. ``post_payment`` must be idempotent at the biller on ``payment_ref``: we may send
the same payment again after a timeout, and the biller must record it once.

``http_json`` is the built-in adapter: JSON over HTTPS, requests signed as every house protocol is
(:mod:`app_api.core.signing`). It is this project's proposed protocol, written down in
``docs/adapters/utilities.yaml``, not a published convention of billers or banks; a biller's real
interface is reached by an adapter factory registered under the entry-point group
``wojia.utilities.biller_adapters``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

import httpx

from app_api.core.http import tls_context
from app_api.core.signing import signed_headers
from columns.utilities.config import BillerConfig, get_config
from columns.utilities.errors import (
    AccountNotFound,
    BillChanged,
    BillerRejected,
    BillerUnavailable,
    HolderNameMismatch,
    UnknownBiller,
)

log = logging.getLogger(__name__)
ADAPTER_GROUP = "wojia.utilities.biller_adapters"


@dataclass(frozen=True, slots=True)
class AccountInfo:
    account_no: str
    holder_masked: str
    address_masked: str


@dataclass(frozen=True, slots=True)
class RemoteBill:
    bill_no: str
    period: str  # "2026-10"
    amount_fen: int
    due_date: dt.date
    usage: str  # "12 吨", "186 度"


@dataclass(frozen=True, slots=True)
class PaymentPost:
    account_no: str
    bill_no: str
    amount_fen: int
    payment_ref: str  # our idempotency key
    paid_at: dt.datetime
    channel: str


@dataclass(frozen=True, slots=True)
class PaymentAck:
    receipt_no: str
    duplicate: bool


class BillerAdapter(Protocol):
    config: BillerConfig

    async def verify_account(self, *, account_no: str, holder_name: str) -> AccountInfo: ...

    async def outstanding_bills(self, *, account_no: str) -> list[RemoteBill]: ...

    async def post_payment(self, post: PaymentPost) -> PaymentAck: ...


class HttpJsonBiller:
    """The ``http_json`` protocol: POST JSON, answer ``{"code": 0, "msg": ..., "data": ...}``."""

    def __init__(self, config: BillerConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        # Its own pool: a listing asks every bound account at once, and the shared client keeps
        # too few idle connections for that (new TCP connections cost more than the calls).
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 5.0)),
            limits=httpx.Limits(
                max_connections=config.max_connections, max_keepalive_connections=config.max_connections
            ),
            verify=tls_context(),
            trust_env=False,
        )

    async def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        signed = signed_headers(
            app_id=self.config.app_id,
            secret=self.config.secret.get_secret_value(),
            method="POST",
            path=path,
            body=body,
        )
        headers = {"content-type": "application/json", **signed.headers}
        client = self._client
        url = self.config.base_url.rstrip("/") + path
        try:
            r = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("biller %s %s: %s", self.config.code, path, type(exc).__name__)
            raise BillerUnavailable(biller=self.config.code, reason=type(exc).__name__) from exc
        if r.status_code >= 500:
            raise BillerUnavailable(biller=self.config.code, reason=f"http_{r.status_code}")
        try:
            answer = r.json()
            code = int(answer["code"])
            data = answer.get("data")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("biller %s %s: unreadable answer (%d bytes)", self.config.code, path, len(r.content))
            raise BillerUnavailable(biller=self.config.code, reason="unreadable") from exc
        if code == 0:
            if not isinstance(data, dict):
                raise BillerUnavailable(biller=self.config.code, reason="unreadable")
            return data
        msg = str(answer.get("msg", ""))[:100]
        if code == 40401:
            raise AccountNotFound(biller=self.config.code)
        if code == 40901:
            raise HolderNameMismatch(biller=self.config.code)
        if code == 40902:
            raise BillChanged(biller=self.config.code)
        if code >= 50000 or code in (40101, 40102):
            # Our signature refused means misconfiguration or clock skew: retryable after a fix.
            raise BillerUnavailable(biller=self.config.code, reason=f"code_{code}")
        raise BillerRejected(
            f"缴费单位答复：{msg}" if msg else None, biller=self.config.code, biller_code=code
        )

    async def verify_account(self, *, account_no: str, holder_name: str) -> AccountInfo:
        d = await self._call("/v1/accounts/verify", {"account_no": account_no, "holder_name": holder_name})
        try:
            return AccountInfo(
                account_no=str(d["account_no"]),
                holder_masked=str(d["holder_masked"]),
                address_masked=str(d.get("address_masked", "")),
            )
        except KeyError as exc:
            raise BillerUnavailable(biller=self.config.code, reason="unreadable") from exc

    async def outstanding_bills(self, *, account_no: str) -> list[RemoteBill]:
        d = await self._call("/v1/bills/query", {"account_no": account_no})
        try:
            bills = [
                RemoteBill(
                    bill_no=str(b["bill_no"]),
                    period=str(b["period"]),
                    amount_fen=int(b["amount_fen"]),
                    due_date=dt.date.fromisoformat(str(b["due_date"])),
                    usage=str(b.get("usage", "")),
                )
                for b in d["bills"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise BillerUnavailable(biller=self.config.code, reason="unreadable") from exc
        if any(b.amount_fen <= 0 for b in bills):
            raise BillerUnavailable(biller=self.config.code, reason="unreadable")
        return bills

    async def post_payment(self, post: PaymentPost) -> PaymentAck:
        d = await self._call(
            "/v1/payments",
            {
                "account_no": post.account_no,
                "bill_no": post.bill_no,
                "amount_fen": post.amount_fen,
                "payment_ref": post.payment_ref,
                "paid_at": post.paid_at.isoformat(),
                "channel": post.channel,
            },
        )
        try:
            return PaymentAck(receipt_no=str(d["receipt_no"]), duplicate=bool(d.get("duplicate", False)))
        except KeyError as exc:
            raise BillerUnavailable(biller=self.config.code, reason="unreadable") from exc


AdapterFactory = Callable[[BillerConfig], BillerAdapter]
_factories: dict[str, AdapterFactory] = {"http_json": HttpJsonBiller}
_instances: dict[str, BillerAdapter] = {}


def register_adapter(name: str, factory: AdapterFactory) -> None:
    _factories[name] = factory


def _factory(name: str) -> AdapterFactory | None:
    if name not in _factories:
        for ep in entry_points(group=ADAPTER_GROUP):
            if ep.name == name:
                _factories[name] = ep.load()
    return _factories.get(name)


def get_adapter(code: str) -> BillerAdapter:
    adapter = _instances.get(code)
    if adapter is None:
        config = get_config().biller(code)
        if config is None:
            raise UnknownBiller(biller=code)
        factory = _factory(config.adapter)
        if factory is None:
            raise UnknownBiller(f"缴费单位 {config.name} 的接口适配器 {config.adapter} 未安装", biller=code)
        adapter = _instances[code] = factory(config)
    return adapter


def reset_adapters() -> None:
    """Forget built adapters (after the configuration changed: tests, benchmarks)."""
    _instances.clear()
