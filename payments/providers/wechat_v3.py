"""WeChat Pay API v3 (JSON, RSA-SHA256 signatures, AES-GCM resources) through ``wechatpayv3``.

Always in public-key mode (``public_key`` + ``public_key_id``): without it the SDK downloads
platform certificates at start-up. Quirks handled here:
- ``callback()`` accepts notifications with any timestamp (and verifies, parses and decrypts with
  new objects each time): notifications are verified and decrypted here with keys prepared once; we
  refuse timestamps more than ``max_skew_s`` away from now and a signed message already applied
  (replay guard: looked up on arrival, remembered only once verified, decrypted, checked and
  applied, see ``applied``).
- ``trade_bill`` returns a download URL with a SHA1 of the bill that ``download_bill`` never
  checks: we decompress and verify it.
- The SDK raises bare ``Exception`` for transport and signature failures: mapped to ProviderError.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import gzip
import hashlib
import hmac
import json
import secrets
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from app_api.core.clock import CHINA_TZ
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
    MemoryReplayGuard,
    Notification,
    NotificationKind,
    ProviderError,
    ProviderName,
    RefundRequest,
    RefundResult,
    RefundState,
    ReplayedNotification,
    ReplayGuard,
    StaleNotification,
    TradeState,
    TradeStatus,
    run_blocking,
)

MAX_NOTIFICATION_BYTES = 64 * 1024
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"

TRADE_STATES: dict[str, TradeState] = {
    "SUCCESS": TradeState.PAID,
    "REFUND": TradeState.REFUNDED,
    "NOTPAY": TradeState.NOT_PAID,
    "USERPAYING": TradeState.PAYING,
    "CLOSED": TradeState.CLOSED,
    "REVOKED": TradeState.FAILED,
    "PAYERROR": TradeState.FAILED,
}
REFUND_STATES: dict[str, RefundState] = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PROCESSING,
    "ABNORMAL": RefundState.ABNORMAL,
    "CLOSED": RefundState.CLOSED,
}
# Error codes normalised across providers.
ERROR_CODES = {
    "ORDER_PAID": "ORDERPAID",
    "ORDERPAID": "ORDERPAID",
    "NOT_ENOUGH": "NOTENOUGH",
    "ORDER_NOT_EXIST": "ORDERNOTEXIST",
    "RESOURCE_NOT_EXISTS": "ORDERNOTEXIST",
    "ORDER_CLOSED": "ORDERCLOSED",
}


@dataclass(frozen=True, slots=True)
class WeChatV3Config:
    appid: str
    mchid: str
    private_key: str  # merchant API private key (PEM or its base64 body)
    cert_serial_no: str  # serial of the merchant API certificate
    apiv3_key: str  # 32 characters
    public_key: str  # WeChat Pay platform public key
    public_key_id: str  # its id, "PUB_KEY_ID_..."
    base_url: str = "https://api.mch.weixin.qq.com"
    timeout_s: float = 10.0
    max_skew_s: int = 300


def parse_rfc3339(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=CHINA_TZ)


def _pem(body: str, kind: str) -> bytes:
    """A key given as PEM or as its bare base64 body, as PEM (wechatpayv3's ``format_*_key``)."""
    start, end = f"-----BEGIN {kind}-----\n", f"\n-----END {kind}-----"
    text = body.strip()
    if not text.startswith(start):
        text = start + text
    if not text.endswith(end):
        text = text + end
    return text.encode()


def _pem_private_key(body: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if not body:
        return None
    try:
        return load_pem_private_key(_pem(body, "PRIVATE KEY"), password=None)
    except Exception as exc:
        raise ValueError("failed to load private key.") from exc


def _pem_public_key(body: str) -> Any:
    """The platform public key, the object wechatpayv3's ``load_public_key`` returns."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if not body:
        return None
    try:
        return load_pem_public_key(_pem(body, "PUBLIC KEY"))
    except Exception as exc:
        raise ValueError("failed to load public key.") from exc


class WeChatPayV3Provider:
    name = ProviderName.WECHAT_V3

    def __init__(self, config: WeChatV3Config, *, replay_guard: ReplayGuard | None = None) -> None:
        self.config = config
        self.app_id = config.appid
        self.merchant_id = config.mchid
        self.replay_guard: ReplayGuard = replay_guard or MemoryReplayGuard()
        # Both keys are read here, as wechatpayv3's client would: a bad key stops the start-up, not
        # the first payment. The client itself (wechatpayv3, requests) is built on first use.
        _pem_private_key(config.private_key)
        self._public_key = _pem_public_key(config.public_key)
        self._wechatpayv3: Any = None
        self._wechatpayv3_lock = threading.Lock()

    @property
    def _client(self) -> Any:
        """wechatpayv3's ``WeChatPay``, built on first use (issue 19: a lighter api process)."""
        client = self._wechatpayv3
        if client is None:
            with self._wechatpayv3_lock:
                client = self._wechatpayv3
                if client is None:
                    from wechatpayv3 import WeChatPay, WeChatPayType

                    config = self.config
                    client = WeChatPay(
                        wechatpay_type=WeChatPayType.MINIPROG,
                        mchid=config.mchid,
                        private_key=config.private_key,
                        cert_serial_no=config.cert_serial_no,
                        appid=config.appid,
                        apiv3_key=config.apiv3_key,
                        public_key=config.public_key,
                        public_key_id=config.public_key_id,
                        timeout=config.timeout_s,
                    )
                    client._core._gate_way = config.base_url.rstrip("/")
                    self._wechatpayv3 = client
        return client

    # -- helpers --------------------------------------------------------------------------------

    def _request(self, func: Any, /, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        try:
            code, message = func(*args, **kwargs)
        except Exception as exc:
            text = str(exc)
            raise ProviderError(
                f"微信支付(v3)请求失败: {text}",
                code="SIGNERROR" if "signature" in text else None,
                retryable="signature" not in text,
            ) from exc
        return int(code), message

    @staticmethod
    def _json(message: Any) -> dict[str, Any]:
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        if not message:
            return {}
        try:
            data = json.loads(message)
        except ValueError as exc:
            raise ProviderError("微信支付(v3)返回了无法解析的内容", retryable=True) from exc
        return data if isinstance(data, dict) else {}

    def _raise(self, code: int, data: dict[str, Any]) -> None:
        err = str(data.get("code", "")) or str(code)
        raise ProviderError(
            f"微信支付(v3)返回错误: {err} {data.get('message', '')}",
            code=ERROR_CODES.get(err, err),
            retryable=code >= 500 or code == 429,
        )

    # -- contract -------------------------------------------------------------------------------

    async def create(self, request: CreatePayment) -> CreatedPayment:
        from wechatpayv3 import WeChatPayType

        pay_type = WeChatPayType.JSAPI if request.channel is Channel.MINIPROGRAM else WeChatPayType.APP
        kwargs: dict[str, Any] = {
            "description": request.description[:127],
            "out_trade_no": request.out_trade_no,
            "amount": {"total": request.amount_fen, "currency": "CNY"},
            "notify_url": request.notify_url,
            "scene_info": {"payer_client_ip": request.client_ip},
            "pay_type": pay_type,
        }
        if request.channel is Channel.MINIPROGRAM:
            kwargs["payer"] = {"openid": request.payer_id}
        if request.attach:
            kwargs["attach"] = request.attach
        if request.expire_at is not None:
            kwargs["time_expire"] = request.expire_at.astimezone(CHINA_TZ).isoformat(timespec="seconds")
        code, message = await run_blocking(self._request, self._client.pay, **kwargs)
        data = self._json(message)
        if code != 200:
            self._raise(code, data)
        prepay_id = data.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise ProviderError("微信支付(v3)未返回 prepay_id")
        return CreatedPayment(
            provider=self.name,
            out_trade_no=request.out_trade_no,
            prepay_id=prepay_id,
            client_params=self.client_params(request.channel, prepay_id),
        )

    def client_params(self, channel: Channel, prepay_id: str) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        if channel is Channel.APP:
            sign = self._client.sign([self.config.appid, timestamp, nonce, prepay_id])
            return {
                "appid": self.config.appid,
                "partnerid": self.config.mchid,
                "prepayid": prepay_id,
                "package": "Sign=WXPay",
                "noncestr": nonce,
                "timestamp": timestamp,
                "sign": sign,
            }
        package = f"prepay_id={prepay_id}"
        sign = self._client.sign([self.config.appid, timestamp, nonce, package])
        return {
            "appId": self.config.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": sign,
        }

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        if len(body) > MAX_NOTIFICATION_BYTES:
            raise MalformedNotification("notification too large")
        h = {k.lower(): v for k, v in headers.items()}
        timestamp, nonce = h.get("wechatpay-timestamp", ""), h.get("wechatpay-nonce", "")
        signature, serial = h.get("wechatpay-signature", ""), h.get("wechatpay-serial", "")
        if not (timestamp and nonce and signature and serial):
            raise MalformedNotification("missing Wechatpay-* signature headers")
        if h.get("wechatpay-signature-type", SIGNATURE_TYPE) != SIGNATURE_TYPE:
            raise BadSignature("unsupported signature type")
        if serial != self.config.public_key_id:
            raise BadSignature(f"unknown platform key {serial!r}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNotification("body is not UTF-8") from exc
        if not self._signed(timestamp, nonce, text, signature):
            raise BadSignature("signature does not match")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > self.config.max_skew_s:
            raise StaleNotification(f"timestamp {timestamp} outside ±{self.config.max_skew_s}s")
        digest = hashlib.sha256(signature.encode()).hexdigest()[:32]
        replay_key = f"wechat_v3:{nonce}:{digest}"
        # Looked up now, remembered only once applied (``applied``): a retry of a message whose
        # processing failed is processed again.
        if await self.replay_guard.seen(replay_key):
            raise ReplayedNotification("this signed notification was already applied")
        # The SDK's ``callback`` would verify the same signature again and parse the body three
        # times; its decryption is done here once (same checks: an encrypted resource, AES-256-GCM,
        # nonce and ciphertext present, the tag matching our APIv3 key).
        try:
            envelope = json.loads(text)
            resource: Any = self._decrypt_resource(envelope) if isinstance(envelope, dict) else None
        except (ValueError, TypeError) as exc:
            raise MalformedNotification(f"not JSON: {exc}") from exc
        if not isinstance(resource, dict):
            raise BadSignature("resource does not decrypt with our APIv3 key")
        event = str(envelope.get("event_type", ""))
        if event.startswith("REFUND."):
            return replace(self._refund_notification(resource, envelope), replay_key=replay_key)
        if event != "TRANSACTION.SUCCESS":
            raise MalformedNotification(f"unexpected event_type {event!r}")
        try:
            appid, mchid = str(resource["appid"]), str(resource["mchid"])
            out_trade_no, transaction_id = str(resource["out_trade_no"]), str(resource["transaction_id"])
            total = int(resource["amount"]["total"])
            trade_state = str(resource["trade_state"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedNotification(f"missing or bad field: {exc}") from exc
        if appid != self.config.appid or mchid != self.config.mchid:
            raise ForeignNotification(f"for appid={appid} mchid={mchid}")
        return Notification(
            provider=self.name,
            kind=NotificationKind.PAYMENT,
            out_trade_no=out_trade_no,
            transaction_id=transaction_id,
            app_id=appid,
            merchant_id=mchid,
            amount_fen=total,
            trade_state=TRADE_STATES.get(trade_state, TradeState.FAILED),
            paid_at=parse_rfc3339(resource.get("success_time")),
            raw={"event_type": event, "id": envelope.get("id"), "resource": resource},
            replay_key=replay_key,
        )

    def _signed(self, timestamp: str, nonce: str, text: str, signature: str) -> bool:
        """wechatpayv3's ``rsa_verify``: SHA256withRSA (PKCS#1 v1.5) over timestamp, nonce and body."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
        from cryptography.hazmat.primitives.hashes import SHA256

        try:
            self._public_key.verify(
                base64.b64decode(signature), f"{timestamp}\n{nonce}\n{text}\n".encode(), PKCS1v15(), SHA256()
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    @functools.cached_property
    def _aesgcm(self) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self.config.apiv3_key.encode("utf-8"))

    def _decrypt_resource(self, envelope: dict[str, Any]) -> Any:
        """The decrypted ``resource`` of a verified envelope, parsed; None if it does not decrypt."""
        from cryptography.exceptions import InvalidTag

        if envelope.get("resource_type") != "encrypt-resource":
            return None
        sealed = envelope.get("resource")
        if not isinstance(sealed, dict):
            return None
        if sealed.get("algorithm") != "AEAD_AES_256_GCM":
            raise MalformedNotification(f"unsupported resource algorithm {sealed.get('algorithm')!r}")
        nonce, ciphertext = sealed.get("nonce"), sealed.get("ciphertext")
        if not (nonce and ciphertext):
            return None
        associated = sealed.get("associated_data") or ""
        try:
            plain = self._aesgcm.decrypt(
                str(nonce).encode("utf-8"), base64.b64decode(ciphertext), str(associated).encode("utf-8")
            )
        except InvalidTag:
            return None
        return json.loads(plain.decode("utf-8"))

    def _refund_notification(self, resource: dict[str, Any], envelope: dict[str, Any]) -> Notification:
        try:
            mchid = str(resource["mchid"])
            amount = resource["amount"]
            total, refund = int(amount["total"]), int(amount["refund"])
            out_trade_no, transaction_id = str(resource["out_trade_no"]), str(resource["transaction_id"])
            out_refund_no, refund_id = str(resource["out_refund_no"]), str(resource["refund_id"])
            status = str(resource["refund_status"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedNotification(f"missing or bad field: {exc}") from exc
        if mchid != self.config.mchid:
            raise ForeignNotification(f"for mchid={mchid}")
        return Notification(
            provider=self.name,
            kind=NotificationKind.REFUND,
            out_trade_no=out_trade_no,
            transaction_id=transaction_id,
            app_id=self.config.appid,
            merchant_id=mchid,
            amount_fen=total,
            trade_state=TradeState.REFUNDED,
            out_refund_no=out_refund_no,
            refund_id=refund_id,
            refund_fen=refund,
            # A status we do not know settles nothing: the refund sweep asks, finance sees it.
            refund_state=REFUND_STATES.get(status, RefundState.PROCESSING),
            paid_at=parse_rfc3339(resource.get("success_time")),
            raw={"event_type": envelope.get("event_type"), "id": envelope.get("id"), "resource": resource},
        )

    async def query(self, out_trade_no: str) -> TradeStatus:
        code, message = await run_blocking(self._request, self._client.query, out_trade_no=out_trade_no)
        data = self._json(message)
        if code == 404 or (code >= 400 and ERROR_CODES.get(str(data.get("code"))) == "ORDERNOTEXIST"):
            return TradeStatus(provider=self.name, out_trade_no=out_trade_no, state=TradeState.NOT_FOUND)
        if code != 200:
            self._raise(code, data)
        if data.get("mchid") != self.config.mchid or data.get("appid") != self.config.appid:
            raise ProviderError("微信支付(v3)返回了其他商户的数据", code="FOREIGN")
        state = TRADE_STATES.get(str(data.get("trade_state")))
        if state is None:
            raise ProviderError(f"未知的交易状态 {data.get('trade_state')!r}")
        amount = data.get("amount") or {}
        return TradeStatus(
            provider=self.name,
            out_trade_no=out_trade_no,
            state=state,
            transaction_id=data.get("transaction_id"),
            amount_fen=int(amount["total"]) if isinstance(amount.get("total"), int) else None,
            paid_at=parse_rfc3339(data.get("success_time")),
            app_id=data.get("appid"),
            merchant_id=data.get("mchid"),
            raw=data,
        )

    async def close(self, out_trade_no: str) -> None:
        code, message = await run_blocking(self._request, self._client.close, out_trade_no=out_trade_no)
        if code in (200, 204):
            return
        data = self._json(message)
        if ERROR_CODES.get(str(data.get("code"))) in {"ORDERCLOSED", "ORDERNOTEXIST"} or code == 404:
            return
        self._raise(code, data)

    async def refund(self, request: RefundRequest) -> RefundResult:
        kwargs: dict[str, Any] = {
            "out_refund_no": request.out_refund_no,
            "amount": {"refund": request.refund_fen, "total": request.total_fen, "currency": "CNY"},
            "out_trade_no": request.out_trade_no,
        }
        if request.reason:
            kwargs["reason"] = request.reason[:80]
        if request.notify_url:
            kwargs["notify_url"] = request.notify_url
        code, message = await run_blocking(self._request, self._client.refund, **kwargs)
        data = self._json(message)
        if code != 200:
            self._raise(code, data)
        refunded = (data.get("amount") or {}).get("refund")
        if refunded != request.refund_fen:
            raise ProviderError(f"退款金额不一致: {refunded!r}")
        return RefundResult(
            provider=self.name,
            out_trade_no=request.out_trade_no,
            out_refund_no=request.out_refund_no,
            refund_fen=request.refund_fen,
            refund_id=data.get("refund_id"),
            state=REFUND_STATES.get(str(data.get("status")), RefundState.PROCESSING),
            raw=data,
        )

    async def query_refund(self, out_refund_no: str) -> RefundResult:
        code, message = await run_blocking(
            self._request, self._client.query_refund, out_refund_no=out_refund_no
        )
        data = self._json(message)
        if code != 200:
            self._raise(code, data)
        return RefundResult(
            provider=self.name,
            out_trade_no=str(data.get("out_trade_no", "")),
            out_refund_no=out_refund_no,
            refund_fen=int((data.get("amount") or {}).get("refund", 0)),
            refund_id=data.get("refund_id"),
            state=REFUND_STATES.get(str(data.get("status")), RefundState.PROCESSING),
            raw=data,
        )

    async def download_bill(self, bill_date: dt.date) -> BillFile:
        code, message = await run_blocking(
            self._request,
            self._client.trade_bill,
            bill_date=bill_date.isoformat(),
            bill_type="ALL",
            tar_type="GZIP",
        )
        data = self._json(message)
        if code != 200:
            if str(data.get("code")) in {"NO_STATEMENT_EXIST", "STATEMENT_CREATING"}:
                raise BillUnavailable(f"微信支付(v3) {bill_date} 无账单", code="NO_BILL")
            self._raise(code, data)
        url, hash_type, hash_value = data.get("download_url"), data.get("hash_type"), data.get("hash_value")
        if not url or hash_type != "SHA1" or not hash_value:
            raise BillIntegrityError("账单信息不完整（缺少下载地址或 SHA1）")
        code, content = await run_blocking(self._request, self._client.download_bill, url)
        if code != 200 or not isinstance(content, bytes):
            raise ProviderError(f"下载账单失败: HTTP {code}", retryable=True)
        try:
            text = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as exc:
            raise BillIntegrityError(f"账单文件损坏或被截断: {exc}") from exc
        actual = hashlib.sha1(text).hexdigest()  # noqa: S324 - the provider's chosen digest
        if not hmac.compare_digest(actual.lower(), str(hash_value).lower()):
            raise BillIntegrityError(f"账单 SHA1 不符: 应为 {hash_value}, 实为 {actual}")
        return BillFile(
            provider=self.name, bill_date=bill_date, format=BillFormat.WECHAT_CSV, content=text, sha1=actual
        )

    async def applied(self, note: Notification) -> None:
        """Remember the applied message: an exact replay within twice the allowed skew is refused."""
        if note.replay_key is not None:
            await self.replay_guard.remember(note.replay_key, 2 * self.config.max_skew_s)

    def acknowledge(self, ok: bool, message: str = "") -> Ack:
        if ok:
            return Ack(status_code=204, body=b"", media_type="application/json")
        body = json.dumps({"code": "FAIL", "message": message or "失败"}, ensure_ascii=False).encode()
        return Ack(status_code=400, body=body, media_type="application/json")
