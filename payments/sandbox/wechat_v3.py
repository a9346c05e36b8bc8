"""WeChat Pay API v3 sandbox: JSON over HTTP, RSA-SHA256 request/response signatures, AES-GCM
notification resources, public-key mode, gzip trade bills with a SHA1.

It checks each request's ``Authorization`` (signature by the merchant's API key, timestamp within
five minutes, serial of a registered merchant certificate) and signs every answer with its platform
key, which ``wechatpayv3`` verifies. The platform key pair is generated at start.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app_api.core.clock import CHINA_TZ, china_now
from payments.sandbox.bills import render_wechat_v3
from payments.sandbox.common import (
    BillRow,
    Delivery,
    Notifier,
    OutgoingNotification,
    RefundControls,
    deliveries_json,
    new_rsa_key,
    parse_delivery,
    pem_public,
    provider_id,
)
from payments.sandbox.wechat_v3_records import V3Merchant, V3Order, V3Refund, bill_rows, rsa_sign

AUTH_RE = re.compile(r'(\w+)="([^"]*)"')


class WeChatPayV3Sandbox(RefundControls):
    def __init__(
        self,
        *,
        auto_settle_refunds: bool = True,
        platform_key: rsa.RSAPrivateKey | None = None,
        public_key_id: str | None = None,
    ) -> None:
        # Generated unless given (development keeps them in a file shared by its processes).
        self.platform_key = platform_key or new_rsa_key()
        self.public_key_id = public_key_id or "PUB_KEY_ID_" + secrets.token_hex(16).upper()
        self.merchants: dict[str, V3Merchant] = {}
        self.orders: dict[tuple[str, str], V3Order] = {}
        self.notifier = Notifier()
        self.extra_bill_rows: dict[dt.date, list[BillRow]] = {}
        self.bill_tamper: str | None = None  # "hash" | "truncate": serve a corrupt bill
        self.auto_settle_refunds = auto_settle_refunds
        self.refund_delay_s = 0.05
        self._bills: dict[str, bytes] = {}
        # Where this sandbox is served (bill download URLs point back here): set by whoever mounts
        # it (the registry, from settings); empty, the request's own base URL.
        self.base_url = ""
        self.app = Starlette(
            routes=[
                Route("/v3/pay/transactions/jsapi", self._pay, methods=["POST"]),
                Route("/v3/pay/transactions/app", self._pay, methods=["POST"]),
                Route("/v3/pay/transactions/out-trade-no/{out_trade_no}", self._query, methods=["GET"]),
                Route(
                    "/v3/pay/transactions/out-trade-no/{out_trade_no}/close", self._close, methods=["POST"]
                ),
                Route("/v3/refund/domestic/refunds", self._refund, methods=["POST"]),
                Route("/v3/refund/domestic/refunds/{out_refund_no}", self._query_refund, methods=["GET"]),
                Route("/v3/bill/tradebill", self._tradebill, methods=["GET"]),
                Route("/v3/billdownload/file", self._billfile, methods=["GET"]),
                Route("/_sandbox/pay", self._control_pay, methods=["POST"]),
                Route("/_sandbox/refunds/settle", self._control_settle, methods=["POST"]),
                Route("/_sandbox/release", self._control_release, methods=["POST"]),
                Route("/_sandbox/orders/{out_trade_no}", self._control_order, methods=["GET"]),
            ]
        )

    @property
    def platform_public_key_pem(self) -> str:
        return pem_public(self.platform_key)

    def add_merchant(
        self,
        *,
        appid: str | None = None,
        mchid: str | None = None,
        apiv3_key: str | None = None,
        cert_serial_no: str | None = None,
        private_key: rsa.RSAPrivateKey | None = None,
    ) -> V3Merchant:
        merchant = V3Merchant(
            appid=appid or "wx" + secrets.token_hex(8),
            mchid=mchid or str(1_600_000_000 + secrets.randbelow(99_999_999)),
            apiv3_key=apiv3_key or secrets.token_hex(16),
            cert_serial_no=cert_serial_no or secrets.token_hex(20).upper(),
            private_key=private_key or new_rsa_key(),
        )
        self.merchants[merchant.cert_serial_no] = merchant
        return merchant

    # -- protocol -------------------------------------------------------------------------------

    def _signed(self, status: int, payload: dict[str, Any] | None) -> Response:
        body = "" if payload is None else json.dumps(payload, ensure_ascii=False)
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16).upper()
        headers = {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": rsa_sign(self.platform_key, f"{timestamp}\n{nonce}\n{body}\n"),
            "Wechatpay-Serial": self.public_key_id,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
            "Request-ID": secrets.token_hex(12),
        }
        return Response(
            body.encode(), status_code=status, headers=headers, media_type="application/json; charset=utf-8"
        )

    def _error(self, status: int, code: str, message: str) -> Response:
        return self._signed(status, {"code": code, "message": message})

    async def _auth(self, request: Request) -> tuple[V3Merchant | None, dict[str, Any], Response | None]:
        raw = (await request.body()).decode("utf-8", "replace")
        header = request.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        fields = dict(AUTH_RE.findall(rest))
        if (
            scheme != "WECHATPAY2-SHA256-RSA2048"
            or not {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} <= fields.keys()
        ):
            return None, {}, self._error(401, "SIGN_ERROR", "Authorization 格式错误")
        merchant = self.merchants.get(fields["serial_no"])
        if merchant is None or merchant.mchid != fields["mchid"]:
            return None, {}, self._error(401, "SIGN_ERROR", "商户证书序列号有误")
        if not fields["timestamp"].isdigit() or abs(time.time() - int(fields["timestamp"])) > 300:
            return None, {}, self._error(401, "SIGN_ERROR", "请求时间戳已过期")
        if request.headers.get("wechatpay-serial") not in (None, self.public_key_id):
            return None, {}, self._error(400, "PARAM_ERROR", "Wechatpay-Serial 有误")
        # The SDK signs the path relative to its gateway: strip where this sandbox is mounted.
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        path += f"?{request.url.query}" if request.url.query else ""
        message = f"{request.method}\n{path}\n{fields['timestamp']}\n{fields['nonce_str']}\n{raw}\n"
        try:
            merchant.private_key.public_key().verify(
                base64.b64decode(fields["signature"]), message.encode(), PKCS1v15(), SHA256()
            )
        except (InvalidSignature, ValueError):
            return None, {}, self._error(401, "SIGN_ERROR", "签名错误")
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return None, {}, self._error(400, "PARAM_ERROR", "JSON 格式错误")
        return merchant, data, None

    async def _pay(self, request: Request) -> Response:
        merchant, data, error = await self._auth(request)
        if error or merchant is None:
            return error or self._error(500, "SYSTEM_ERROR", "")
        trade_type = "JSAPI" if request.url.path.endswith("/jsapi") else "APP"
        if data.get("appid") != merchant.appid or data.get("mchid") != merchant.mchid:
            return self._error(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        amount = data.get("amount") or {}
        if not isinstance(amount.get("total"), int) or amount["total"] <= 0:
            return self._error(400, "PARAM_ERROR", "amount.total 有误")
        for key in ("description", "out_trade_no", "notify_url"):
            if not data.get(key):
                return self._error(400, "PARAM_ERROR", f"缺少参数 {key}")
        if trade_type == "JSAPI" and not (data.get("payer") or {}).get("openid"):
            return self._error(400, "PARAM_ERROR", "缺少参数 payer.openid")
        order_key = (merchant.mchid, data["out_trade_no"])
        order = self.orders.get(order_key)
        if order is not None:
            if order.state in ("SUCCESS", "REFUND"):
                return self._error(400, "ORDER_PAID", "该订单已支付")
            if order.total != amount["total"] or order.state == "CLOSED":
                return self._error(400, "OUT_TRADE_NO_USED", "商户订单号重复")
        else:
            expire = dt.datetime.fromisoformat(data["time_expire"]) if data.get("time_expire") else None
            order = V3Order(
                merchant=merchant,
                out_trade_no=data["out_trade_no"],
                prepay_id="wx" + secrets.token_hex(15),
                trade_type=trade_type,
                total=amount["total"],
                description=data["description"],
                notify_url=data["notify_url"],
                openid=(data.get("payer") or {}).get("openid"),
                attach=data.get("attach"),
                time_expire=expire,
            )
            self.orders[order_key] = order
        return self._signed(200, {"prepay_id": order.prepay_id})

    def _expire(self, order: V3Order) -> None:
        if order.state == "NOTPAY" and order.time_expire and china_now() > order.time_expire:
            order.state = "CLOSED"

    def _transaction(self, order: V3Order, *, total: int | None = None) -> dict[str, Any]:
        total = order.total if total is None else total
        body: dict[str, Any] = {
            "appid": order.merchant.appid,
            "mchid": order.merchant.mchid,
            "out_trade_no": order.out_trade_no,
            "trade_type": order.trade_type,
            "trade_state": order.state,
            "trade_state_desc": {
                "SUCCESS": "支付成功",
                "NOTPAY": "未支付",
                "CLOSED": "已关闭",
                "REFUND": "转入退款",
            }.get(order.state, order.state),
            "amount": {"total": total, "currency": "CNY"},
        }
        if order.transaction_id:
            body.update(
                transaction_id=order.transaction_id,
                bank_type="OTHERS",
                attach=order.attach or "",
                success_time=order.success_time.isoformat(timespec="seconds") if order.success_time else None,
                payer={"openid": order.openid or "o" + order.out_trade_no},
            )
            body["amount"].update(payer_total=total, payer_currency="CNY")
        return body

    async def _query(self, request: Request) -> Response:
        merchant, _, error = await self._auth(request)
        if error or merchant is None:
            return error or self._error(500, "SYSTEM_ERROR", "")
        if request.query_params.get("mchid") != merchant.mchid:
            return self._error(400, "PARAM_ERROR", "mchid 有误")
        order = self.orders.get((merchant.mchid, request.path_params["out_trade_no"]))
        if order is None:
            return self._error(404, "ORDER_NOT_EXIST", "订单不存在")
        self._expire(order)
        return self._signed(200, self._transaction(order))

    async def _close(self, request: Request) -> Response:
        merchant, _data, error = await self._auth(request)
        if error or merchant is None:
            return error or self._error(500, "SYSTEM_ERROR", "")
        order = self.orders.get((merchant.mchid, request.path_params["out_trade_no"]))
        if order is None:
            return self._error(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.state in ("SUCCESS", "REFUND"):
            return self._error(400, "ORDER_PAID", "订单已支付")
        order.state = "CLOSED"
        return self._signed(204, None)

    def _find_refund(self, merchant: V3Merchant, out_refund_no: str) -> tuple[V3Order, V3Refund] | None:
        for order in self.orders.values():
            if order.merchant is merchant and out_refund_no in order.refunds:
                return order, order.refunds[out_refund_no]
        return None

    def _refund_body(self, order: V3Order, refund: V3Refund) -> dict[str, Any]:
        return {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "success_time": refund.success_time.isoformat(timespec="seconds")
            if refund.success_time
            else None,
            "create_time": china_now().isoformat(timespec="seconds"),
            "status": refund.status,
            "amount": {
                "total": order.total,
                "refund": refund.refund,
                "payer_total": order.total,
                "payer_refund": refund.refund,
                "currency": "CNY",
            },
        }

    async def _refund(self, request: Request) -> Response:
        merchant, data, error = await self._auth(request)
        if error or merchant is None:
            return error or self._error(500, "SYSTEM_ERROR", "")
        order = self.orders.get((merchant.mchid, str(data.get("out_trade_no"))))
        if order is None:
            return self._error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if order.state not in ("SUCCESS", "REFUND"):
            return self._error(400, "INVALID_REQUEST", "订单未支付")
        amount = data.get("amount") or {}
        if amount.get("total") != order.total or not isinstance(amount.get("refund"), int):
            return self._error(400, "PARAM_ERROR", "金额有误")
        out_refund_no = str(data.get("out_refund_no", ""))
        refund = order.refunds.get(out_refund_no)
        if refund is None:
            if amount["refund"] <= 0 or order.refunded + amount["refund"] > order.total:
                return self._error(403, "NOT_ENOUGH", "退款金额超过可退金额")
            refund = V3Refund(
                out_refund_no=out_refund_no,
                refund_id=provider_id("50", 29),
                refund=amount["refund"],
                notify_url=data.get("notify_url"),
            )
            order.refunds[out_refund_no] = refund
            order.state = "REFUND"
        elif refund.refund != amount["refund"]:
            return self._error(400, "INVALID_REQUEST", "退款单号已用于其他金额")
        if self.auto_settle_refunds and refund.status == "PROCESSING" and not refund.scheduled:
            # Like the real gateway: the answer first, the refund result (and its notification) shortly after.
            refund.scheduled = True
            self.notifier.later(self.refund_delay_s, lambda: self.settle_refund(order, refund, Delivery()))
        return self._signed(200, self._refund_body(order, refund))

    async def _query_refund(self, request: Request) -> Response:
        merchant, _, error = await self._auth(request)
        if error or merchant is None:
            return error or self._error(500, "SYSTEM_ERROR", "")
        found = self._find_refund(merchant, request.path_params["out_refund_no"])
        if found is None:
            return self._error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return self._signed(200, self._refund_body(*found))

    async def _tradebill(self, request: Request) -> Response:
        merchant, _, error = await self._auth(request)
        if error or merchant is None:
            return error or self._error(500, "SYSTEM_ERROR", "")
        try:
            bill_date = dt.date.fromisoformat(request.query_params.get("bill_date", ""))
        except ValueError:
            return self._error(400, "PARAM_ERROR", "bill_date 格式错误")
        rows = bill_rows(self.orders.values(), merchant, bill_date, self.extra_bill_rows.get(bill_date, []))
        if not rows:
            return self._error(400, "NO_STATEMENT_EXIST", "账单不存在")
        content, sha1 = render_wechat_v3(rows)
        if self.bill_tamper == "hash":
            sha1 = "0" * 40
        elif self.bill_tamper == "truncate":
            content = content[: len(content) // 2]
        token = secrets.token_urlsafe(16)
        self._bills[token] = content
        base = self.base_url or str(request.base_url).rstrip("/")
        return self._signed(
            200,
            {
                "hash_type": "SHA1",
                "hash_value": sha1,
                "download_url": f"{base}/v3/billdownload/file?token={token}",
            },
        )

    async def _billfile(self, request: Request) -> Response:
        merchant, _, error = await self._auth(request)
        if error or merchant is None:
            return error or self._error(500, "SYSTEM_ERROR", "")
        content = self._bills.pop(request.query_params.get("token", ""), None)
        if content is None:
            return self._error(404, "RESOURCE_NOT_EXISTS", "下载地址已失效")
        # The real file download is not signed (the SDK skips verification for it).
        return Response(content, media_type="application/octet-stream")

    # -- notifications --------------------------------------------------------------------------

    def _envelope(
        self,
        merchant: V3Merchant,
        event_type: str,
        summary: str,
        original_type: str,
        resource: dict[str, Any],
        delivery: Delivery,
    ) -> tuple[bytes, dict[str, str]]:
        nonce = secrets.token_urlsafe(9)[:12]
        associated = original_type
        plaintext = json.dumps(resource, ensure_ascii=False).encode()
        ciphertext = AESGCM(merchant.apiv3_key.encode()).encrypt(
            nonce.encode(), plaintext, associated.encode()
        )
        envelope = {
            "id": secrets.token_hex(16),
            "create_time": china_now().isoformat(timespec="seconds"),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ciphertext).decode(),
                "associated_data": associated,
                "nonce": nonce,
            },
        }
        body = json.dumps(envelope, ensure_ascii=False)
        timestamp = int(time.time()) - (600 if delivery.forge == "stale" else 0)
        sig_nonce = secrets.token_hex(16).upper()
        key = self.platform_key if delivery.forge != "signature" else new_rsa_key()
        signature = rsa_sign(key, f"{timestamp}\n{sig_nonce}\n{body}\n")
        if delivery.forge == "amount":
            body = body.replace('"summary": "', '"summary": "0', 1)  # altered after signing
        headers = {
            "Content-Type": "application/json",
            "Wechatpay-Timestamp": str(timestamp),
            "Wechatpay-Nonce": sig_nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": self.public_key_id,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        }
        return body.encode(), headers

    async def pay(
        self, order: V3Order, delivery: Delivery, *, paid_at: dt.datetime | None = None
    ) -> list[Any]:
        if order.state == "NOTPAY":
            order.state = "SUCCESS"
            order.transaction_id = provider_id("42", 28)
            order.success_time = (paid_at or china_now()).astimezone(CHINA_TZ)
        total = order.total + (1 if delivery.forge == "amount_signed" else 0)
        resource = self._transaction(order, total=total)
        if delivery.forge == "merchant":
            resource["mchid"], resource["appid"] = "1000000001", "wx" + "0" * 16
        body, headers = self._envelope(
            order.merchant, "TRANSACTION.SUCCESS", "支付成功", "transaction", resource, delivery
        )
        return await self.notifier.submit(
            OutgoingNotification(
                url=order.notify_url,
                body=body,
                headers=headers,
                label=f"pay:{order.out_trade_no}",
                delivery=delivery,
            )
        )

    async def settle_refund(
        self,
        order: V3Order,
        refund: V3Refund,
        delivery: Delivery,
        *,
        status: str = "SUCCESS",
        at: dt.datetime | None = None,
    ) -> list[Any]:
        refund.status = status
        refund.success_time = (at or china_now()).astimezone(CHINA_TZ) if status == "SUCCESS" else None
        if not refund.notify_url:
            return []
        resource = {
            "mchid": order.merchant.mchid,
            "out_trade_no": order.out_trade_no,
            "transaction_id": order.transaction_id,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": status,
            "success_time": refund.success_time.isoformat(timespec="seconds")
            if refund.success_time
            else None,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": order.total,
                "refund": refund.refund,
                "payer_total": order.total,
                "payer_refund": refund.refund,
            },
        }
        body, headers = self._envelope(
            order.merchant, f"REFUND.{status}", "退款结果", "refund", resource, delivery
        )
        return await self.notifier.submit(
            OutgoingNotification(
                url=refund.notify_url,
                body=body,
                headers=headers,
                label=f"refund:{refund.out_refund_no}",
                delivery=delivery,
            )
        )

    def _order_by_no(self, out_trade_no: str) -> V3Order | None:
        for (_, no), order in self.orders.items():
            if no == out_trade_no:
                return order
        return None

    async def _control_pay(self, request: Request) -> Response:
        payload = await request.json()
        order = self._order_by_no(payload["out_trade_no"])
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        paid_at = dt.datetime.fromisoformat(payload["paid_at"]) if payload.get("paid_at") else None
        records = await self.pay(order, parse_delivery(payload), paid_at=paid_at)
        return JSONResponse(
            {
                "transaction_id": order.transaction_id,
                "state": order.state,
                "deliveries": deliveries_json(records),
            }
        )

    async def _control_order(self, request: Request) -> Response:
        order = self._order_by_no(request.path_params["out_trade_no"])
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        self._expire(order)
        return JSONResponse(
            {
                "out_trade_no": order.out_trade_no,
                "state": order.state,
                "total": order.total,
                "transaction_id": order.transaction_id,
                "refunds": {k: {"refund": r.refund, "status": r.status} for k, r in order.refunds.items()},
            }
        )
