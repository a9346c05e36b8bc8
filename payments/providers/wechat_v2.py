"""WeChat Pay API v2 (XML, MD5 or HMAC-SHA256 signatures) through wechatpy's ``WeChatPay``.

Quirks handled here rather than in wechatpy:
- ``parse_payment_result`` verifies MD5 signatures only, so notifications (and API answers, which
  wechatpy does not verify at all) are verified here for both sign types. A notification that claims
  another sign type than the one we use is refused: accepting MD5 when we sign with HMAC-SHA256
  would let an attacker choose the weaker algorithm.
- ``order.create`` looks up the machine's external IP when ``client_ip`` is missing: always passed.
- ``jsapi.get_jsapi_params`` signs with MD5 only; with HMAC-SHA256 the parameters are signed here.
- Refund notifications carry no signature: ``req_info`` is AES-256-ECB encrypted with MD5(api key),
  and decrypting it is the only authentication the protocol offers.
"""

from __future__ import annotations

import datetime as dt
import hmac
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from xml.parsers.expat import ExpatError, ParserCreate

from app_api.core.clock import CHINA_TZ, china_now
from payments.providers.base import (
    Ack,
    BadSignature,
    BillFile,
    BillFormat,
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

SignType = Literal["MD5", "HMAC-SHA256"]
MAX_NOTIFICATION_BYTES = 64 * 1024

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
    "CHANGE": RefundState.ABNORMAL,
    "REFUNDCLOSE": RefundState.CLOSED,
}


@dataclass(frozen=True, slots=True)
class WeChatV2Config:
    appid: str
    mch_id: str
    api_key: str
    sign_type: SignType = "HMAC-SHA256"
    base_url: str = "https://api.mch.weixin.qq.com/"
    # Client certificate for secapi/ (refunds) at the real gateway; the sandbox does not ask for it.
    mch_cert: str | None = None
    mch_key: str | None = None
    timeout_s: float = 10.0


def sign_v2(params: Mapping[str, Any], api_key: str, sign_type: str) -> str:
    """The v2 signature over non-empty parameters (sorted ``k=v`` joined by ``&``, then ``key=``)."""
    from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

    if sign_type == "HMAC-SHA256":
        return str(calculate_signature_hmac(dict(params), api_key))
    if sign_type == "MD5":
        return str(calculate_signature(dict(params), api_key))
    raise BadSignature(f"unsupported sign_type {sign_type!r}")


def verify_v2(data: Mapping[str, Any], api_key: str, sign_type: str) -> bool:
    params = {k: v for k, v in data.items() if k != "sign" and v is not None}
    sign = data.get("sign")
    if not isinstance(sign, str) or not sign:
        return False
    return hmac.compare_digest(sign.upper(), sign_v2(params, api_key, sign_type))


class _FlatXml:
    """Expat handlers reading ``<xml><key>text</key>...</xml>`` into a dict, as ``xmltodict`` did
    (text stripped, empty elements skipped, attributes on the root kept as ``@name``) at a quarter of
    its cost; a nested or repeated element, or an attribute on a field, is refused."""

    __slots__ = ("bad", "depth", "field", "fields", "root_text", "text")

    def __init__(self) -> None:
        self.depth = 0
        self.fields: dict[str, str] = {}
        self.field = ""
        self.text: list[str] = []
        self.root_text: list[str] = []
        self.bad: str | None = None

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            if name != "xml":
                self.bad = "no <xml> root"
            for key, value in attrs.items():
                self.fields["@" + key] = value
        elif self.depth == 2:
            if attrs or name in self.fields:
                self.bad = self.bad or f"unexpected structure in <{name}>"
            self.field, self.text = name, []
        else:
            self.bad = self.bad or f"unexpected structure in <{self.field}>"

    def end(self, name: str) -> None:
        if self.depth == 2:
            value = "".join(self.text).strip()
            if value:
                self.fields[name] = value
            elif name in self.fields:
                self.bad = self.bad or f"unexpected structure in <{name}>"
            else:
                self.fields[name] = ""  # an empty element: a placeholder that refuses a repeat
        self.depth -= 1

    def chars(self, data: str) -> None:
        if self.depth == 2:
            self.text.append(data)
        elif self.depth == 1:
            self.root_text.append(data)


def _refuse_dtd(*_: object) -> None:
    raise ValueError("DTDs are not accepted")


def parse_xml(body: bytes) -> dict[str, str]:
    """Parse a flat v2 ``<xml>`` document; refuse DTDs (entity expansion) and nested junk."""
    if len(body) > MAX_NOTIFICATION_BYTES:
        raise MalformedNotification("notification too large")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise MalformedNotification("DTDs are not accepted")
    flat = _FlatXml()
    parser = ParserCreate()
    # The byte check above misses a DTD in another encoding (UTF-16 with its BOM): expat refuses it here.
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.StartElementHandler = flat.start
    parser.EndElementHandler = flat.end
    parser.CharacterDataHandler = flat.chars
    try:
        parser.Parse(body, True)
    except (ExpatError, ValueError, TypeError) as exc:
        raise MalformedNotification(f"not XML: {exc}") from exc
    if flat.bad is not None:
        raise MalformedNotification(flat.bad)
    if not flat.fields:  # <xml/>, or only text in it
        raise MalformedNotification("no <xml> root")
    root_text = "".join(flat.root_text).strip()
    if root_text:
        flat.fields["#text"] = root_text
    return {k: v for k, v in flat.fields.items() if v != ""}


def parse_china_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ)
    except ValueError:
        return None


def _required(data: Mapping[str, str], *keys: str) -> None:
    missing = [k for k in keys if not data.get(k)]
    if missing:
        raise MalformedNotification(f"missing fields: {', '.join(missing)}")


def _int_field(data: Mapping[str, str], key: str) -> int:
    try:
        value = int(data[key])
    except (KeyError, ValueError) as exc:
        raise MalformedNotification(f"{key} is not an integer") from exc
    if value < 0:
        raise MalformedNotification(f"{key} is negative")
    return value


class WeChatPayV2Provider:
    name = ProviderName.WECHAT_V2

    def __init__(self, config: WeChatV2Config) -> None:
        self.config = config
        self.app_id = config.appid
        self.merchant_id = config.mch_id
        self._wechatpy: Any = None
        self._wechatpy_lock = threading.Lock()

    @property
    def _client(self) -> Any:
        """wechatpy's ``WeChatPay``, built on first use: wechatpy (and requests under it) stay out of
        the api process until a WeChat Pay v2 call is made (issue 19: a lighter process)."""
        client = self._wechatpy
        if client is None:
            with self._wechatpy_lock:
                client = self._wechatpy
                if client is None:
                    from wechatpy.pay import WeChatPay

                    config = self.config
                    client = WeChatPay(
                        appid=config.appid,
                        api_key=config.api_key,
                        mch_id=config.mch_id,
                        mch_cert=config.mch_cert,
                        mch_key=config.mch_key,
                        timeout=config.timeout_s,
                    )
                    # wechatpy reads the gateway from this attribute on every request.
                    client.API_BASE_URL = config.base_url.rstrip("/") + "/"
                    self._wechatpy = client
        return client

    # -- helpers --------------------------------------------------------------------------------

    def _call(self, func: Any, sign_type: str, /, **kwargs: Any) -> dict[str, str]:
        """Run a wechatpy call; map its errors; verify the answer's signature (wechatpy does not)."""
        from wechatpy.exceptions import WeChatPayException

        try:
            data = func(**kwargs)
        except WeChatPayException as exc:
            code = exc.errcode or exc.return_code or "FAIL"
            message = exc.errmsg or exc.return_msg or str(exc)
            raise ProviderError(
                f"微信支付返回错误: {code} {message}",
                code=str(code),
                retryable=exc.return_code != "SUCCESS" or code == "SYSTEMERROR",
            ) from exc
        except OSError as exc:  # requests' ConnectionError, timeouts
            raise ProviderError(f"微信支付不可达: {exc}", retryable=True) from exc
        if not isinstance(data, dict):
            raise ProviderError("微信支付返回了无法解析的内容", retryable=True)
        if not verify_v2(data, self.config.api_key, sign_type):
            raise ProviderError("微信支付返回内容签名错误", code="SIGNERROR")
        if data.get("appid", self.config.appid) != self.config.appid or (
            data.get("mch_id", self.config.mch_id) != self.config.mch_id
        ):
            raise ProviderError("微信支付返回了其他商户的数据", code="FOREIGN")
        return dict(data)

    # -- contract -------------------------------------------------------------------------------

    async def create(self, request: CreatePayment) -> CreatedPayment:
        trade_type = "JSAPI" if request.channel is Channel.MINIPROGRAM else "APP"
        kwargs: dict[str, Any] = {
            "trade_type": trade_type,
            "body": request.description[:127],
            "total_fee": request.amount_fen,
            "notify_url": request.notify_url,
            "client_ip": request.client_ip,
            "out_trade_no": request.out_trade_no,
            "attach": request.attach,
            "sign_type": self.config.sign_type,
        }
        if request.channel is Channel.MINIPROGRAM:
            kwargs["user_id"] = request.payer_id
        if request.expire_at is not None:
            now = china_now()
            kwargs["time_start"] = now
            kwargs["time_expire"] = request.expire_at.astimezone(CHINA_TZ)
        data = await run_blocking(self._call, self._client.order.create, self.config.sign_type, **kwargs)
        prepay_id = data.get("prepay_id")
        if not prepay_id:
            raise ProviderError("微信支付未返回 prepay_id")
        return CreatedPayment(
            provider=self.name,
            out_trade_no=request.out_trade_no,
            prepay_id=prepay_id,
            client_params=self.client_params(request.channel, prepay_id),
        )

    def client_params(self, channel: Channel, prepay_id: str) -> dict[str, str]:
        if channel is Channel.APP:
            return {k: str(v) for k, v in self._client.order.get_appapi_params(prepay_id).items()}
        params = {
            "appId": self.config.appid,
            "timeStamp": str(int(time.time())),
            "nonceStr": _nonce(),
            "package": f"prepay_id={prepay_id}",
            "signType": self.config.sign_type,
        }
        params["paySign"] = sign_v2(params, self.config.api_key, self.config.sign_type)
        return params

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        data = parse_xml(body)
        if data.get("return_code") != "SUCCESS":
            raise MalformedNotification(f"return_code={data.get('return_code')!r}")
        if "req_info" in data:
            return self._parse_refund_notification(data)
        claimed = data.get("sign_type")
        if claimed is not None and claimed != self.config.sign_type:
            raise BadSignature(f"sign_type {claimed} refused (we use {self.config.sign_type})")
        if not verify_v2(data, self.config.api_key, self.config.sign_type):
            raise BadSignature("signature does not match")
        _required(data, "appid", "mch_id", "out_trade_no", "transaction_id", "total_fee", "result_code")
        if data["appid"] != self.config.appid or data["mch_id"] != self.config.mch_id:
            raise ForeignNotification(f"for appid={data['appid']} mch_id={data['mch_id']}")
        state = TradeState.PAID if data["result_code"] == "SUCCESS" else TradeState.FAILED
        return Notification(
            provider=self.name,
            kind=NotificationKind.PAYMENT,
            out_trade_no=data["out_trade_no"],
            transaction_id=data["transaction_id"],
            app_id=data["appid"],
            merchant_id=data["mch_id"],
            amount_fen=_int_field(data, "total_fee"),
            trade_state=state,
            paid_at=parse_china_time(data.get("time_end")),
            raw=dict(data),
        )

    def _parse_refund_notification(self, data: dict[str, str]) -> Notification:
        from wechatpy.crypto import WeChatRefundCrypto

        _required(data, "appid", "mch_id", "req_info")
        if data["appid"] != self.config.appid or data["mch_id"] != self.config.mch_id:
            raise ForeignNotification(f"for appid={data['appid']} mch_id={data['mch_id']}")
        try:
            info = WeChatRefundCrypto(self.config.api_key).decrypt_message(
                data, self.config.appid, self.config.mch_id
            )
        except Exception as exc:
            raise BadSignature("req_info does not decrypt with our key") from exc
        if not isinstance(info, dict):
            raise MalformedNotification("req_info is not a <root> document")
        _required(info, "out_trade_no", "transaction_id", "out_refund_no", "refund_id", "total_fee")
        refund_status = info.get("refund_status", "")
        return Notification(
            provider=self.name,
            kind=NotificationKind.REFUND,
            out_trade_no=info["out_trade_no"],
            transaction_id=info["transaction_id"],
            app_id=data["appid"],
            merchant_id=data["mch_id"],
            amount_fen=_int_field(info, "total_fee"),
            trade_state=TradeState.REFUNDED,
            out_refund_no=info["out_refund_no"],
            refund_id=info["refund_id"],
            refund_fen=_int_field(info, "refund_fee"),
            # A status we do not know settles nothing: the refund sweep asks, finance sees it.
            refund_state=REFUND_STATES.get(refund_status, RefundState.PROCESSING),
            raw={**data, "req_info": dict(info)},
        )

    async def query(self, out_trade_no: str) -> TradeStatus:
        try:
            data = await run_blocking(self._call, self._client.order.query, "MD5", out_trade_no=out_trade_no)
        except ProviderError as exc:
            if exc.code == "ORDERNOTEXIST":
                return TradeStatus(provider=self.name, out_trade_no=out_trade_no, state=TradeState.NOT_FOUND)
            raise
        state = TRADE_STATES.get(data.get("trade_state", ""))
        if state is None:
            raise ProviderError(f"未知的交易状态 {data.get('trade_state')!r}")
        total = data.get("total_fee")
        return TradeStatus(
            provider=self.name,
            out_trade_no=out_trade_no,
            state=state,
            transaction_id=data.get("transaction_id") or None,
            amount_fen=int(total) if total and total.isdigit() else None,
            paid_at=parse_china_time(data.get("time_end")),
            app_id=data.get("appid"),
            merchant_id=data.get("mch_id"),
            raw=data,
        )

    async def close(self, out_trade_no: str) -> None:
        try:
            await run_blocking(self._call, self._client.order.close, "MD5", out_trade_no=out_trade_no)
        except ProviderError as exc:
            if exc.code in {"ORDERCLOSED", "ORDERNOTEXIST"}:
                return
            raise

    async def refund(self, request: RefundRequest) -> RefundResult:
        data = await run_blocking(
            self._call,
            self._client.refund.apply,
            "MD5",
            total_fee=request.total_fen,
            refund_fee=request.refund_fen,
            out_refund_no=request.out_refund_no,
            out_trade_no=request.out_trade_no,
            refund_desc=request.reason,
            notify_url=request.notify_url,
        )
        refund_fee = data.get("refund_fee", "")
        if not refund_fee.isdigit() or int(refund_fee) != request.refund_fen:
            raise ProviderError(f"退款金额不一致: {refund_fee!r}")
        return RefundResult(
            provider=self.name,
            out_trade_no=request.out_trade_no,
            out_refund_no=request.out_refund_no,
            refund_fen=request.refund_fen,
            refund_id=data.get("refund_id"),
            # v2 accepts a refund here; the money moves later (refund notification or query).
            state=RefundState.PROCESSING,
            raw=data,
        )

    async def query_refund(self, out_refund_no: str) -> RefundResult:
        data = await run_blocking(self._call, self._client.refund.query, "MD5", out_refund_no=out_refund_no)
        return RefundResult(
            provider=self.name,
            out_trade_no=data.get("out_trade_no", ""),
            out_refund_no=out_refund_no,
            refund_fen=int(data.get("refund_fee_0") or data.get("refund_fee") or 0),
            refund_id=data.get("refund_id_0"),
            state=REFUND_STATES.get(data.get("refund_status_0", ""), RefundState.PROCESSING),
            raw=data,
        )

    async def download_bill(self, bill_date: dt.date) -> BillFile:
        from wechatpy.exceptions import WeChatPayException

        def fetch() -> Any:
            return self._client.tools.download_bill(bill_date, bill_type="ALL")

        try:
            text = await run_blocking(fetch)
        except WeChatPayException as exc:
            message = f"{exc.return_msg or ''} {exc.errmsg or ''}".strip()
            if "No Bill Exist" in message or exc.errcode == "20002":
                raise BillUnavailable(f"微信支付 {bill_date} 无账单", code="NO_BILL") from exc
            raise ProviderError(f"下载账单失败: {message}", retryable=True) from exc
        except OSError as exc:
            raise ProviderError(f"微信支付不可达: {exc}", retryable=True) from exc
        if isinstance(text, dict):
            # An XML answer that wechatpy parsed as success cannot be a bill.
            raise BillUnavailable(f"微信支付 {bill_date} 未返回账单", code="NO_BILL")
        return BillFile(
            provider=self.name,
            bill_date=bill_date,
            format=BillFormat.WECHAT_CSV,
            content=text.encode("utf-8"),
        )

    async def applied(self, note: Notification) -> None:
        """Nothing to remember: no replay guard (repeats are deduplicated by the ledger)."""

    def acknowledge(self, ok: bool, message: str = "") -> Ack:
        code, text = ("SUCCESS", "OK") if ok else ("FAIL", (message or "FAIL").replace("]]>", ""))
        body = (
            f"<xml><return_code><![CDATA[{code}]]></return_code>"
            f"<return_msg><![CDATA[{text}]]></return_msg></xml>"
        )
        return Ack(status_code=200, body=body.encode("utf-8"), media_type="application/xml")


def _nonce() -> str:
    import secrets

    return secrets.token_hex(16)
