"""Alipay (open platform, RSA2) through the official SDK ``alipay.aop.api`` (alipay-sdk-python).

The SDK is ~439 MB and 36k files: it is imported lazily (never at module import), so the api
process pays for it only when an Alipay operation actually runs.

Quirks handled here:
- No notify helper: notifications are verified with the SDK's ``verify_with_rsa`` over its
  ``get_sign_content`` of the parameters minus ``sign`` and ``sign_type``. Only RSA2 is accepted.
- The private key must be PKCS#1 (``BEGIN RSA PRIVATE KEY``); a PKCS#8 key fails at signing time,
  so it is refused at construction.
- ``WebUtils.get_http_connection`` ignores a port in the gateway URL (and crashes concatenating it):
  a corrected copy is installed once, identical for the real gateway (https, no port).
- Refund notifications are ordinary ``trade_status_sync`` messages carrying ``out_biz_no`` (our refund
  number) and the cumulative ``refund_fee``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import io
import json
import threading
import urllib.parse
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app_api.core.clock import CHINA_TZ
from app_api.core.money import fen_to_yuan, yuan_to_fen
from payments.providers.base import (
    Ack,
    BadSignature,
    BillFile,
    BillFormat,
    BillIntegrityError,
    BillUnavailable,
    Channel,
    CreatedPayment,
    CreatePayment,
    ForeignNotification,
    MalformedNotification,
    Notification,
    NotificationKind,
    ProviderError,
    ProviderName,
    RefundRequest,
    RefundResult,
    RefundState,
    TradeState,
    TradeStatus,
    run_blocking,
)

MAX_NOTIFICATION_BYTES = 64 * 1024
TRADE_STATES: dict[str, TradeState] = {
    "WAIT_BUYER_PAY": TradeState.NOT_PAID,
    "TRADE_SUCCESS": TradeState.PAID,
    "TRADE_FINISHED": TradeState.PAID,
    "TRADE_CLOSED": TradeState.CLOSED,
}
SUPPORTED_CHARSETS = {"utf-8", "gbk"}

_patch_lock = threading.Lock()
_patched = False


def _install_port_fix() -> None:
    """Make the SDK honour a port in ``server_url`` (its own code drops it)."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        import http.client

        from alipay.aop.api.util import WebUtils

        def get_http_connection(url: str, query_string: str, timeout: float) -> Any:
            parts = urllib.parse.urlparse(url)
            secure = parts.scheme == "https"
            port = parts.port or (443 if secure else 80)
            host = parts.hostname or ""
            connection: http.client.HTTPConnection = (
                http.client.HTTPSConnection(host=host, port=port, timeout=timeout)
                if secure
                else http.client.HTTPConnection(host=host, port=port, timeout=timeout)
            )
            target = f"{parts.scheme}://{parts.netloc}{parts.path}?{query_string}"
            return target, connection

        WebUtils.get_http_connection = get_http_connection
        _patched = True


def _pem_body(key: str) -> str:
    return "".join(line for line in key.strip().splitlines() if not line.startswith("-----"))


@dataclass(frozen=True, slots=True)
class AlipayConfig:
    app_id: str
    app_private_key: str  # PKCS#1 ("BEGIN RSA PRIVATE KEY"), PEM or body
    alipay_public_key: str  # PEM or body
    seller_id: str  # the merchant's PID (2088...), checked on notifications
    server_url: str = "https://openapi.alipay.com/gateway.do"
    timeout_s: int = 15
    charset: str = "utf-8"


def zip_names(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Member names decoded properly: Alipay's zips carry GBK names without the UTF-8 flag."""
    names: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        if not info.flag_bits & 0x800:
            with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
                name = name.encode("cp437").decode("gbk")
        names[name] = info
    return names


def parse_alipay_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ)
    except ValueError:
        return None


def decode_form(body: bytes) -> dict[str, str]:
    """Decode an x-www-form-urlencoded notification in the charset it declares."""
    if len(body) > MAX_NOTIFICATION_BYTES:
        raise MalformedNotification("notification too large")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedNotification("body is not URL-encoded (raw non-ASCII bytes)") from exc
    probe = dict(urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="latin-1"))
    charset = probe.get("charset", "utf-8").lower()
    if charset not in SUPPORTED_CHARSETS:
        raise MalformedNotification(f"unsupported charset {charset!r}")
    try:
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, encoding=charset, errors="strict"
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedNotification(f"not a form in {charset}: {exc}") from exc
    data: dict[str, str] = {}
    for key, value in pairs:
        if key in data:
            raise MalformedNotification(f"parameter {key} given twice")
        data[key] = value
    return data


class AlipayProvider:
    name = ProviderName.ALIPAY

    def __init__(self, config: AlipayConfig) -> None:
        if "BEGIN PRIVATE KEY" in config.app_private_key:
            raise ValueError("Alipay SDK needs a PKCS#1 private key (BEGIN RSA PRIVATE KEY), not PKCS#8")
        self.config = config
        self.app_id = config.app_id
        self.merchant_id = config.seller_id
        self._client: Any = None
        self._client_lock = threading.Lock()

    def _sdk_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
                from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient

                _install_port_fix()
                cfg = AlipayClientConfig()
                cfg.server_url = self.config.server_url
                cfg.app_id = self.config.app_id
                cfg.app_private_key = _pem_body(self.config.app_private_key)
                cfg.alipay_public_key = _pem_body(self.config.alipay_public_key)
                cfg.sign_type = "RSA2"
                cfg.charset = self.config.charset
                cfg.timeout = self.config.timeout_s
                self._client = DefaultAlipayClient(alipay_client_config=cfg)
            return self._client

    def _execute(self, request: Any) -> dict[str, Any]:
        """Execute an SDK request; the SDK verifies the answer's RSA2 signature itself."""
        from alipay.aop.api.exception.Exception import AopException, RequestException, ResponseException

        try:
            content = self._sdk_client().execute(request)
        except (AopException, RequestException, ResponseException) as exc:
            text = str(exc)
            raise ProviderError(
                f"支付宝请求失败: {text[:300]}",
                code="SIGNERROR" if "verify" in text else None,
                retryable="verify" not in text,
            ) from exc
        except OSError as exc:
            raise ProviderError(f"支付宝不可达: {exc}", retryable=True) from exc
        try:
            data = json.loads(content)
        except (TypeError, ValueError) as exc:
            raise ProviderError("支付宝返回了无法解析的内容", retryable=True) from exc
        if not isinstance(data, dict):
            raise ProviderError("支付宝返回了无法解析的内容", retryable=True)
        return data

    @staticmethod
    def _failed(data: dict[str, Any]) -> ProviderError:
        sub = str(data.get("sub_code") or data.get("code") or "")
        return ProviderError(
            f"支付宝返回错误: {sub} {data.get('sub_msg') or data.get('msg') or ''}",
            code=sub,
            retryable=str(data.get("code")) == "20000",
        )

    # -- contract -------------------------------------------------------------------------------

    async def create(self, request: CreatePayment) -> CreatedPayment:
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "total_amount": fen_to_yuan(request.amount_fen),
            "subject": request.description[:256],
        }
        if request.expire_at is not None:
            biz["time_expire"] = request.expire_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
        if request.attach:
            biz["passback_params"] = urllib.parse.quote(request.attach)
        if request.channel is Channel.APP:
            from alipay.aop.api.request.AlipayTradeAppPayRequest import AlipayTradeAppPayRequest

            biz["product_code"] = "QUICK_MSECURITY_PAY"
            req = AlipayTradeAppPayRequest()
            req.biz_content = biz
            req.notify_url = request.notify_url

            def sign() -> str:
                return str(self._sdk_client().sdk_execute(req))

            order_string = await run_blocking(sign)
            return CreatedPayment(
                provider=self.name,
                out_trade_no=request.out_trade_no,
                client_params={"orderStr": order_string},
            )

        from alipay.aop.api.request.AlipayTradeCreateRequest import AlipayTradeCreateRequest

        biz["product_code"] = "JSAPI_PAY"
        # Mini-program users are identified by buyer_open_id (new) or buyer_id (2088..., legacy).
        biz["buyer_id" if (request.payer_id or "").startswith("2088") else "buyer_open_id"] = request.payer_id
        req = AlipayTradeCreateRequest()
        req.biz_content = biz
        req.notify_url = request.notify_url
        data = await run_blocking(self._execute, req)
        if str(data.get("code")) != "10000" or not data.get("trade_no"):
            raise self._failed(data)
        if data.get("out_trade_no") != request.out_trade_no:
            raise ProviderError("支付宝返回的商户订单号不一致")
        return CreatedPayment(
            provider=self.name,
            out_trade_no=request.out_trade_no,
            prepay_id=data["trade_no"],
            client_params={"tradeNO": data["trade_no"]},
        )

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        data = decode_form(body)
        for key in (
            "sign",
            "sign_type",
            "app_id",
            "trade_no",
            "out_trade_no",
            "trade_status",
            "total_amount",
            "notify_id",
        ):
            if not data.get(key):
                raise MalformedNotification(f"missing field {key}")
        if data["sign_type"] != "RSA2":
            raise BadSignature(f"sign_type {data['sign_type']} refused (RSA2 only)")
        # ~0.5 ms of CPU: run inline (a thread hop costs more than it saves).
        if not self.verify(data):
            raise BadSignature("signature does not match")
        if (
            data["app_id"] != self.config.app_id
            or data.get("seller_id", self.config.seller_id) != self.config.seller_id
        ):
            raise ForeignNotification(f"for app_id={data['app_id']} seller_id={data.get('seller_id')}")
        try:
            total = yuan_to_fen(data["total_amount"])
            refund_total = yuan_to_fen(data["refund_fee"]) if data.get("refund_fee") else None
        except ValueError as exc:
            raise MalformedNotification(str(exc)) from exc
        state = TRADE_STATES.get(data["trade_status"])
        if state is None:
            raise MalformedNotification(f"unknown trade_status {data['trade_status']!r}")
        if data.get("out_biz_no") and refund_total is not None:
            return Notification(
                provider=self.name,
                kind=NotificationKind.REFUND,
                out_trade_no=data["out_trade_no"],
                transaction_id=data["trade_no"],
                app_id=data["app_id"],
                merchant_id=data.get("seller_id", self.config.seller_id),
                amount_fen=total,
                trade_state=TradeState.REFUNDED if state is TradeState.PAID else state,
                paid_at=parse_alipay_time(data.get("gmt_payment")),
                out_refund_no=data["out_biz_no"],
                refund_fen=None,  # Alipay reports only the cumulative refund (``refunded_total_fen``)
                refund_state=RefundState.SUCCEEDED,
                raw={**data, "refunded_total_fen": refund_total},
            )
        return Notification(
            provider=self.name,
            kind=NotificationKind.PAYMENT,
            out_trade_no=data["out_trade_no"],
            transaction_id=data["trade_no"],
            app_id=data["app_id"],
            merchant_id=data.get("seller_id", self.config.seller_id),
            amount_fen=total,
            trade_state=state,
            paid_at=parse_alipay_time(data.get("gmt_payment")),
            raw=data,
        )

    @functools.cached_property
    def _alipay_key(self) -> Any:
        # Parsed once (the SDK's verify_with_rsa parses the PEM on every call, and checks with the
        # pure-Python ``rsa`` package: ~0.5 ms a notification). The same key, checked by OpenSSL.
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        key = load_der_public_key(base64.b64decode(_pem_body(self.config.alipay_public_key)))
        if not isinstance(key, RSAPublicKey):
            raise ValueError("the Alipay public key is not an RSA key")
        return key

    def verify(self, data: Mapping[str, str]) -> bool:
        """RSA2 (SHA256withRSA, PKCS#1 v1.5) over the SDK's ``get_sign_content`` of all but sign and
        sign_type, as the SDK's ``verify_with_rsa`` checks it (SHA-256 only: RSA2 is nothing else)."""
        from alipay.aop.api.util.SignatureUtils import get_sign_content
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
        from cryptography.hazmat.primitives.hashes import SHA256

        params = {k: v for k, v in data.items() if k not in ("sign", "sign_type")}
        charset = data.get("charset", "utf-8")
        try:
            content = get_sign_content(params).encode(charset)
            self._alipay_key.verify(base64.b64decode(data["sign"]), content, PKCS1v15(), SHA256())
        except (InvalidSignature, ValueError, UnicodeError):
            return False
        return True

    async def query(self, out_trade_no: str) -> TradeStatus:
        from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest

        req = AlipayTradeQueryRequest()
        req.biz_content = {"out_trade_no": out_trade_no}
        data = await run_blocking(self._execute, req)
        if str(data.get("code")) != "10000":
            if data.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                return TradeStatus(provider=self.name, out_trade_no=out_trade_no, state=TradeState.NOT_FOUND)
            raise self._failed(data)
        state = TRADE_STATES.get(str(data.get("trade_status")))
        if state is None:
            raise ProviderError(f"未知的交易状态 {data.get('trade_status')!r}")
        return TradeStatus(
            provider=self.name,
            out_trade_no=out_trade_no,
            state=state,
            transaction_id=data.get("trade_no"),
            amount_fen=yuan_to_fen(str(data["total_amount"])) if data.get("total_amount") else None,
            paid_at=parse_alipay_time(data.get("send_pay_date")),
            app_id=self.config.app_id,
            merchant_id=self.config.seller_id,
            raw=data,
        )

    async def close(self, out_trade_no: str) -> None:
        from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest

        req = AlipayTradeCloseRequest()
        req.biz_content = {"out_trade_no": out_trade_no}
        data = await run_blocking(self._execute, req)
        if str(data.get("code")) == "10000" or data.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return
        if data.get("sub_code") == "ACQ.TRADE_STATUS_ERROR":
            # Alipay answers the same for "already closed" and "already paid": ask which.
            status = await self.query(out_trade_no)
            if status.state in (TradeState.CLOSED, TradeState.NOT_FOUND):
                return
            raise ProviderError("支付宝订单已支付，不能关闭", code="ORDERPAID")
        raise self._failed(data)

    async def refund(self, request: RefundRequest) -> RefundResult:
        from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest

        biz = {
            "out_trade_no": request.out_trade_no,
            "refund_amount": fen_to_yuan(request.refund_fen),
            "out_request_no": request.out_refund_no,
        }
        if request.reason:
            biz["refund_reason"] = request.reason[:256]
        req = AlipayTradeRefundRequest()
        req.biz_content = biz
        data = await run_blocking(self._execute, req)
        if str(data.get("code")) != "10000":
            error = self._failed(data)
            if data.get("sub_code") == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL":
                error.code = "NOTENOUGH"
            raise error
        return RefundResult(
            provider=self.name,
            out_trade_no=request.out_trade_no,
            out_refund_no=request.out_refund_no,
            refund_fen=request.refund_fen,
            refund_id=data.get("trade_no"),
            # Alipay refunds synchronously: code 10000 means the money went back.
            state=RefundState.SUCCEEDED,
            raw=data,
        )

    async def download_bill(self, bill_date: dt.date) -> BillFile:
        import httpx
        from alipay.aop.api.request.AlipayDataDataserviceBillDownloadurlQueryRequest import (
            AlipayDataDataserviceBillDownloadurlQueryRequest,
        )

        from app_api.core.http import tls_context

        req = AlipayDataDataserviceBillDownloadurlQueryRequest()
        req.biz_content = {"bill_type": "trade", "bill_date": bill_date.isoformat()}
        data = await run_blocking(self._execute, req)
        if str(data.get("code")) != "10000" or not data.get("bill_download_url"):
            if data.get("sub_code") in {"isp.bill_not_exist", "BILL_NOT_EXIST"}:
                raise BillUnavailable(f"支付宝 {bill_date} 无账单", code="NO_BILL")
            raise self._failed(data)
        # The download URL expires in 30 seconds: fetch it at once.
        async with httpx.AsyncClient(timeout=self.config.timeout_s, verify=tls_context()) as client:
            try:
                response = await client.get(str(data["bill_download_url"]))
            except httpx.HTTPError as exc:
                raise ProviderError(f"下载账单失败: {exc}", retryable=True) from exc
        if response.status_code != 200:
            raise ProviderError(f"下载账单失败: HTTP {response.status_code}", retryable=True)
        content = response.content
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                bad = archive.testzip()
                names = list(zip_names(archive))
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise BillIntegrityError(f"账单压缩包损坏或被截断: {exc}") from exc
        if bad is not None:
            raise BillIntegrityError(f"账单压缩包内文件校验失败: {bad}")
        if not any(n.endswith("_业务明细.csv") for n in names):
            raise BillIntegrityError("账单压缩包中没有业务明细文件")
        return BillFile(
            provider=self.name, bill_date=bill_date, format=BillFormat.ALIPAY_ZIP, content=content
        )

    async def applied(self, note: Notification) -> None:
        """Nothing to remember: no replay guard (repeats are deduplicated by the ledger)."""

    def acknowledge(self, ok: bool, message: str = "") -> Ack:
        # Alipay retries until it reads exactly "success"; anything else counts as failure.
        return Ack(status_code=200, body=b"success" if ok else b"fail", media_type="text/plain")
