"""WeChat Pay API v2 sandbox: XML over HTTP, MD5 / HMAC-SHA256 signatures, as wechatpy speaks it.

Endpoints (relative to the sandbox root, which a ``WeChatPay`` client uses as ``API_BASE_URL``):
``pay/unifiedorder``, ``pay/orderquery``, ``pay/closeorder``, ``secapi/pay/refund``,
``pay/refundquery``, ``pay/downloadbill``. Control endpoints under ``_sandbox/`` play the payer
(pay an order), settle refunds, release held notifications and seed bill rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import xmltodict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app_api.core.clock import CHINA_TZ, china_now
from payments.sandbox.bills import render_wechat_csv
from payments.sandbox.common import (
    BillRow,
    Delivery,
    Notifier,
    OutgoingNotification,
    RefundControls,
    deliveries_json,
    parse_delivery,
    provider_id,
)
from payments.sandbox.wechat_v2_records import V2Merchant, V2Order, V2Refund, bill_rows, sign, to_xml


class WeChatPayV2Sandbox(RefundControls):
    def __init__(self, *, auto_settle_refunds: bool = True) -> None:
        self.merchants: dict[str, V2Merchant] = {}
        self.orders: dict[tuple[str, str], V2Order] = {}
        self.notifier = Notifier(
            accepted=lambda status, body: status == 200 and b"<return_code><![CDATA[SUCCESS]]>" in body
        )
        self.extra_bill_rows: dict[dt.date, list[BillRow]] = {}
        self.auto_settle_refunds = auto_settle_refunds
        self.bill_tamper: str | None = None  # "drop_row": a detail row missing, the summary unchanged
        self.refund_delay_s = 0.05
        self.requests_seen = 0
        self.app = Starlette(
            routes=[
                Route("/pay/unifiedorder", self._unifiedorder, methods=["POST"]),
                Route("/pay/orderquery", self._orderquery, methods=["POST"]),
                Route("/pay/closeorder", self._closeorder, methods=["POST"]),
                Route("/secapi/pay/refund", self._refund, methods=["POST"]),
                Route("/pay/refundquery", self._refundquery, methods=["POST"]),
                Route("/pay/downloadbill", self._downloadbill, methods=["POST"]),
                Route("/_sandbox/pay", self._control_pay, methods=["POST"]),
                Route("/_sandbox/refunds/settle", self._control_settle, methods=["POST"]),
                Route("/_sandbox/release", self._control_release, methods=["POST"]),
                Route("/_sandbox/orders/{out_trade_no}", self._control_order, methods=["GET"]),
                Route("/_sandbox/deliveries", self._control_deliveries, methods=["GET"]),
            ]
        )

    def add_merchant(
        self, *, appid: str | None = None, mch_id: str | None = None, api_key: str | None = None
    ) -> V2Merchant:
        merchant = V2Merchant(
            appid=appid or "wx" + secrets.token_hex(8),
            mch_id=mch_id or str(1_900_000_000 + secrets.randbelow(99_999_999)),
            api_key=api_key or secrets.token_hex(16),  # 32 characters, like a real API key
        )
        self.merchants[merchant.mch_id] = merchant
        return merchant

    # -- protocol -------------------------------------------------------------------------------

    async def _read(self, request: Request) -> tuple[dict[str, str], V2Merchant | None, Response | None]:
        self.requests_seen += 1
        raw = await request.body()
        try:
            doc = xmltodict.parse(raw)["xml"]
            data = {k: v for k, v in doc.items() if isinstance(v, str)}
        except Exception:
            return {}, None, self._fail("XML格式错误")
        merchant = self.merchants.get(data.get("mch_id", ""))
        if merchant is None:
            return data, None, self._fail("商户号不存在")
        if data.get("appid") != merchant.appid:
            return data, None, self._fail("appid和mch_id不匹配")
        sign_type = data.get("sign_type", "MD5")
        if sign_type not in ("MD5", "HMAC-SHA256") or data.get("sign") != sign(
            data, merchant.api_key, sign_type
        ):
            return data, None, self._fail("签名错误")
        if not data.get("nonce_str"):
            return data, None, self._fail("缺少参数nonce_str")
        return data, merchant, None

    @staticmethod
    def _fail(message: str) -> Response:
        return Response(to_xml({"return_code": "FAIL", "return_msg": message}), media_type="application/xml")

    def _answer(
        self,
        request_data: dict[str, str],
        merchant: V2Merchant,
        payload: dict[str, Any],
        *,
        err_code: str | None = None,
        err_code_des: str | None = None,
    ) -> Response:
        sign_type = request_data.get("sign_type", "MD5")
        body: dict[str, Any] = {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": merchant.appid,
            "mch_id": merchant.mch_id,
            "nonce_str": secrets.token_hex(16),
            "result_code": "FAIL" if err_code else "SUCCESS",
            "err_code": err_code,
            "err_code_des": err_code_des,
            **({} if err_code else payload),
        }
        body["sign"] = sign(body, merchant.api_key, sign_type)
        return Response(to_xml(body), media_type="application/xml")

    async def _unifiedorder(self, request: Request) -> Response:
        data, merchant, error = await self._read(request)
        if error or merchant is None:
            return error or self._fail("error")
        required = ["body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type"]
        if data.get("trade_type") == "JSAPI":
            required.append("openid")
        missing = [k for k in required if not data.get(k)]
        if missing:
            return self._answer(
                data, merchant, {}, err_code="PARAM_ERROR", err_code_des=f"缺少参数{missing[0]}"
            )
        if not data["total_fee"].isdigit() or int(data["total_fee"]) <= 0:
            return self._answer(data, merchant, {}, err_code="PARAM_ERROR", err_code_des="total_fee格式错误")
        key = (merchant.mch_id, data["out_trade_no"])
        existing = self.orders.get(key)
        if existing is not None:
            if existing.state == "SUCCESS":
                return self._answer(data, merchant, {}, err_code="ORDERPAID", err_code_des="该订单已支付")
            if existing.total_fee != int(data["total_fee"]) or existing.state == "CLOSED":
                return self._answer(
                    data, merchant, {}, err_code="OUT_TRADE_NO_USED", err_code_des="商户订单号重复"
                )
            order = existing
        else:
            expire = None
            if data.get("time_expire"):
                expire = dt.datetime.strptime(data["time_expire"], "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ)
            order = V2Order(
                merchant=merchant,
                out_trade_no=data["out_trade_no"],
                prepay_id="wx" + secrets.token_hex(15),
                trade_type=data["trade_type"],
                total_fee=int(data["total_fee"]),
                body=data["body"],
                notify_url=data["notify_url"],
                sign_type=data.get("sign_type", "MD5"),
                openid=data.get("openid"),
                attach=data.get("attach"),
                time_expire=expire,
            )
            self.orders[key] = order
        return self._answer(data, merchant, {"trade_type": order.trade_type, "prepay_id": order.prepay_id})

    def _find(self, merchant: V2Merchant, data: dict[str, str]) -> V2Order | None:
        if data.get("out_trade_no"):
            return self.orders.get((merchant.mch_id, data["out_trade_no"]))
        for order in self.orders.values():
            if order.merchant is merchant and order.transaction_id == data.get("transaction_id"):
                return order
        return None

    async def _orderquery(self, request: Request) -> Response:
        data, merchant, error = await self._read(request)
        if error or merchant is None:
            return error or self._fail("error")
        order = self._find(merchant, data)
        if order is None:
            return self._answer(
                data, merchant, {}, err_code="ORDERNOTEXIST", err_code_des="此交易订单号不存在"
            )
        self._expire(order)
        payload: dict[str, Any] = {
            "out_trade_no": order.out_trade_no,
            "trade_state": order.state,
            "trade_type": order.trade_type,
            "total_fee": order.total_fee,
            "trade_state_desc": {
                "SUCCESS": "支付成功",
                "NOTPAY": "订单未支付",
                "CLOSED": "订单已关闭",
                "REFUND": "订单转入退款",
                "PAYERROR": "支付失败",
            }.get(order.state, order.state),
        }
        if order.transaction_id:
            payload.update(
                transaction_id=order.transaction_id,
                openid=order.openid or "o" + order.out_trade_no,
                cash_fee=order.total_fee,
                time_end=order.time_end.strftime("%Y%m%d%H%M%S") if order.time_end else None,
                bank_type="OTHERS",
                attach=order.attach,
            )
        return self._answer(data, merchant, payload)

    def _expire(self, order: V2Order) -> None:
        if order.state == "NOTPAY" and order.time_expire and china_now() > order.time_expire:
            order.state = "CLOSED"

    async def _closeorder(self, request: Request) -> Response:
        data, merchant, error = await self._read(request)
        if error or merchant is None:
            return error or self._fail("error")
        order = self._find(merchant, data)
        if order is None:
            return self._answer(data, merchant, {}, err_code="ORDERNOTEXIST", err_code_des="订单不存在")
        if order.state in ("SUCCESS", "REFUND"):
            return self._answer(
                data, merchant, {}, err_code="ORDERPAID", err_code_des="订单已支付，不能发起关单"
            )
        if order.state == "CLOSED":
            return self._answer(data, merchant, {}, err_code="ORDERCLOSED", err_code_des="订单已关闭")
        order.state = "CLOSED"
        return self._answer(data, merchant, {})

    async def _refund(self, request: Request) -> Response:
        data, merchant, error = await self._read(request)
        if error or merchant is None:
            return error or self._fail("error")
        order = self._find(merchant, data)
        if order is None:
            return self._answer(data, merchant, {}, err_code="ORDERNOTEXIST", err_code_des="订单不存在")
        if order.state not in ("SUCCESS", "REFUND"):
            return self._answer(data, merchant, {}, err_code="TRADE_STATE_ERROR", err_code_des="订单状态错误")
        try:
            total_fee, refund_fee = int(data["total_fee"]), int(data["refund_fee"])
        except (KeyError, ValueError):
            return self._answer(data, merchant, {}, err_code="PARAM_ERROR", err_code_des="金额格式错误")
        if total_fee != order.total_fee:
            return self._answer(data, merchant, {}, err_code="INVALID_REQUEST", err_code_des="订单金额不一致")
        out_refund_no = data.get("out_refund_no", "")
        refund = order.refunds.get(out_refund_no)
        if refund is None:
            if refund_fee <= 0 or order.refunded + refund_fee > order.total_fee:
                return self._answer(
                    data, merchant, {}, err_code="NOTENOUGH", err_code_des="退款金额超过可退金额"
                )
            refund = V2Refund(
                out_refund_no=out_refund_no,
                refund_id=provider_id("50", 29),
                refund_fee=refund_fee,
                notify_url=data.get("notify_url") or order.notify_url,
            )
            order.refunds[out_refund_no] = refund
            order.state = "REFUND"
        elif refund.refund_fee != refund_fee:
            return self._answer(
                data, merchant, {}, err_code="INVALID_REQUEST", err_code_des="退款单号已用于其他金额"
            )
        if self.auto_settle_refunds and refund.status == "PROCESSING" and not refund.scheduled:
            # Like the real gateway: the answer first, the refund result (and its notification) shortly after.
            refund.scheduled = True
            self.notifier.later(self.refund_delay_s, lambda: self.settle_refund(order, refund, Delivery()))
        return self._answer(
            data,
            merchant,
            {
                "transaction_id": order.transaction_id,
                "out_trade_no": order.out_trade_no,
                "out_refund_no": refund.out_refund_no,
                "refund_id": refund.refund_id,
                "refund_fee": refund.refund_fee,
                "total_fee": order.total_fee,
                "cash_fee": order.total_fee,
            },
        )

    async def _refundquery(self, request: Request) -> Response:
        data, merchant, error = await self._read(request)
        if error or merchant is None:
            return error or self._fail("error")
        for order in self.orders.values():
            if order.merchant is not merchant:
                continue
            refund = order.refunds.get(data.get("out_refund_no", ""))
            if refund is not None:
                return self._answer(
                    data,
                    merchant,
                    {
                        "transaction_id": order.transaction_id,
                        "out_trade_no": order.out_trade_no,
                        "total_fee": order.total_fee,
                        "refund_count": 1,
                        "out_refund_no_0": refund.out_refund_no,
                        "refund_id_0": refund.refund_id,
                        "refund_fee_0": refund.refund_fee,
                        "refund_status_0": refund.status,
                        "refund_fee": refund.refund_fee,
                    },
                )
        return self._answer(data, merchant, {}, err_code="REFUNDNOTEXIST", err_code_des="退款订单查询失败")

    async def _downloadbill(self, request: Request) -> Response:
        data, merchant, error = await self._read(request)
        if error or merchant is None:
            return error or self._fail("error")
        try:
            bill_date = dt.datetime.strptime(data.get("bill_date", ""), "%Y%m%d").date()
        except ValueError:
            return self._fail("invalid bill_date")
        rows = bill_rows(self.orders.values(), merchant, bill_date, self.extra_bill_rows.get(bill_date, []))
        if not rows:
            # The real gateway answers an unsigned FAIL document for empty days.
            return self._fail("No Bill Exist")
        text = render_wechat_csv(rows)
        if self.bill_tamper == "drop_row":
            lines = text.split("\r\n")
            text = "\r\n".join(lines[:1] + lines[2:])
        return Response(text, media_type="text/plain; charset=utf-8")

    # -- payer simulation and notifications -----------------------------------------------------

    def notification_for(self, order: V2Order, delivery: Delivery, *, result_code: str = "SUCCESS") -> bytes:
        merchant = order.merchant
        total = order.total_fee + (1 if delivery.forge == "amount_signed" else 0)
        data: dict[str, Any] = {
            "return_code": "SUCCESS",
            "appid": merchant.appid,
            "mch_id": merchant.mch_id,
            "nonce_str": secrets.token_hex(16),
            "result_code": result_code,
            "openid": order.openid or "o" + order.out_trade_no,
            "is_subscribe": "N",
            "trade_type": order.trade_type,
            "bank_type": "OTHERS",
            "total_fee": total,
            "fee_type": "CNY",
            "cash_fee": total,
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "attach": order.attach,
            "time_end": (order.time_end or china_now()).strftime("%Y%m%d%H%M%S"),
        }
        if delivery.forge == "merchant":
            data["appid"] = "wx" + "0" * 16
            data["mch_id"] = "1000000001"
        key = merchant.api_key if delivery.forge != "signature" else secrets.token_hex(16)
        data["sign"] = sign(data, key, order.sign_type)
        if delivery.forge == "amount":
            data["total_fee"] = order.total_fee * 100
            data["cash_fee"] = order.total_fee * 100
        return to_xml(data).encode("utf-8")

    async def pay(
        self,
        order: V2Order,
        delivery: Delivery,
        *,
        result: str = "SUCCESS",
        paid_at: dt.datetime | None = None,
    ) -> list[Any]:
        if order.state == "NOTPAY":
            if result == "SUCCESS":
                order.state = "SUCCESS"
                order.transaction_id = provider_id("42", 28)
                order.time_end = (paid_at or china_now()).astimezone(CHINA_TZ)
            else:
                order.state = "PAYERROR"
                order.transaction_id = provider_id("42", 28)
        body = self.notification_for(
            order, delivery, result_code="SUCCESS" if order.state != "PAYERROR" else "FAIL"
        )
        note = OutgoingNotification(
            url=order.notify_url,
            body=body,
            headers={"Content-Type": "text/xml"},
            label=f"pay:{order.out_trade_no}",
            delivery=delivery,
        )
        return await self.notifier.submit(note)

    async def settle_refund(
        self,
        order: V2Order,
        refund: V2Refund,
        delivery: Delivery,
        *,
        status: str = "SUCCESS",
        at: dt.datetime | None = None,
    ) -> list[Any]:
        from wechatpy.crypto import RefundCrypto

        refund.status = status
        refund.success_time = (at or china_now()).astimezone(CHINA_TZ) if status == "SUCCESS" else None
        if not refund.notify_url:
            return []
        info = {
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "total_fee": order.total_fee,
            "refund_fee": refund.refund_fee,
            "settlement_refund_fee": refund.refund_fee,
            "refund_status": status,
            "success_time": refund.success_time.strftime("%Y-%m-%d %H:%M:%S") if refund.success_time else "",
            "refund_recv_accout": "支付用户零钱",
            "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS",
            "refund_request_source": "API",
        }
        plain = "<root>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in info.items()) + "</root>"
        key = order.merchant.api_key if delivery.forge != "signature" else secrets.token_hex(16)
        aes_key = hashlib.md5(key.encode()).hexdigest().encode()  # noqa: S324 - the protocol's choice
        req_info = RefundCrypto(aes_key).encrypt(plain).decode()
        envelope = {
            "return_code": "SUCCESS",
            "appid": order.merchant.appid,
            "mch_id": order.merchant.mch_id,
            "nonce_str": secrets.token_hex(16),
            "req_info": req_info,
        }
        note = OutgoingNotification(
            url=refund.notify_url,
            body=to_xml(envelope).encode(),
            headers={"Content-Type": "text/xml"},
            label=f"refund:{refund.out_refund_no}",
            delivery=delivery,
        )
        return await self.notifier.submit(note)

    def _order_by_no(self, out_trade_no: str, mch_id: str | None = None) -> V2Order | None:
        for (mch, no), order in self.orders.items():
            if no == out_trade_no and (mch_id is None or mch == mch_id):
                return order
        return None

    async def _control_pay(self, request: Request) -> Response:
        payload = await request.json()
        order = self._order_by_no(payload["out_trade_no"], payload.get("mch_id"))
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        paid_at = dt.datetime.fromisoformat(payload["paid_at"]) if payload.get("paid_at") else None
        records = await self.pay(
            order, parse_delivery(payload), result=payload.get("result", "SUCCESS"), paid_at=paid_at
        )
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
                "total_fee": order.total_fee,
                "transaction_id": order.transaction_id,
                "prepay_id": order.prepay_id,
                "refunds": {
                    k: {"refund_fee": r.refund_fee, "status": r.status} for k, r in order.refunds.items()
                },
            }
        )
