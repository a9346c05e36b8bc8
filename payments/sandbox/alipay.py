"""Alipay open-platform sandbox: ``gateway.do`` with RSA2 request and response signatures, app pay
order strings, mini-program trades (``alipay.trade.create``), form-encoded notifications signed by
the sandbox's Alipay key, and daily bills as a zip of GBK CSVs behind a 30-second download URL.

Each registered app gets an RSA key pair generated here; the app's private key is handed out in
PKCS#1 form (what the official SDK needs) and the sandbox keeps the public half to check requests.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
import urllib.parse
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app_api.core.clock import CHINA_TZ, china_now
from app_api.core.money import fen_to_yuan, yuan_to_fen
from payments.sandbox.alipay_records import AlipayApp, AlipayTrade, bill_rows, rsa2, sign_content
from payments.sandbox.bills import render_alipay_zip
from payments.sandbox.common import (
    BillRow,
    Delivery,
    Notifier,
    NotifierControls,
    OutgoingNotification,
    deliveries_json,
    new_rsa_key,
    parse_delivery,
    pem_public,
    provider_id,
)


def _invalid(sub_code: str, sub_msg: str) -> dict[str, Any]:
    return {"code": "40002", "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": sub_msg}


class AlipaySandbox(NotifierControls):
    def __init__(self, *, alipay_key: rsa.RSAPrivateKey | None = None) -> None:
        # Generated unless given (development keeps it in a file shared by its processes).
        self.alipay_key = alipay_key or new_rsa_key()
        # Where this sandbox is served (bill download URLs point back here): set by whoever mounts
        # it (the registry, from settings); empty, the request's own base URL.
        self.base_url = ""
        self.apps: dict[str, AlipayApp] = {}
        self.trades: dict[tuple[str, str], AlipayTrade] = {}
        self.notifier = Notifier(accepted=lambda status, body: status == 200 and body.strip() == b"success")
        self.extra_bill_rows: dict[dt.date, list[BillRow]] = {}
        self.bill_tamper: str | None = None  # "truncate": serve a cut-off zip
        self.notify_charset: str | None = None  # override the charset notifications are sent in
        self._bills: dict[str, tuple[float, bytes]] = {}
        self.app = Starlette(
            routes=[
                Route("/gateway.do", self._gateway, methods=["POST", "GET"]),
                Route("/_bills/{token}", self._bill_file, methods=["GET"]),
                Route("/_sandbox/pay", self._control_pay, methods=["POST"]),
                Route("/_sandbox/release", self._control_release, methods=["POST"]),
                Route("/_sandbox/orders/{out_trade_no}", self._control_order, methods=["GET"]),
            ]
        )

    @property
    def alipay_public_key_pem(self) -> str:
        return pem_public(self.alipay_key)

    def add_app(
        self, *, app_id: str | None = None, pid: str | None = None, key: rsa.RSAPrivateKey | None = None
    ) -> AlipayApp:
        app = AlipayApp(
            app_id=app_id or "2021" + str(secrets.randbelow(10**12)).zfill(12),
            pid=pid or "2088" + str(secrets.randbelow(10**12)).zfill(12),
            key=key or new_rsa_key(),
        )
        self.apps[app.app_id] = app
        return app

    # -- protocol -------------------------------------------------------------------------------

    def _verify_request(self, params: dict[str, str]) -> tuple[AlipayApp | None, dict[str, Any] | None]:
        app = self.apps.get(params.get("app_id", ""))
        if app is None:
            return None, _invalid("isv.invalid-app-id", "无效的AppID参数")
        if params.get("sign_type") != "RSA2":
            return None, _invalid("isv.invalid-signature-type", "无效的签名类型")
        signature = params.get("sign", "")
        unsigned = {k: v for k, v in params.items() if k != "sign"}
        charset = params.get("charset", "utf-8")
        try:
            app.key.public_key().verify(
                base64.b64decode(signature), sign_content(unsigned).encode(charset), PKCS1v15(), SHA256()
            )
        except (InvalidSignature, ValueError):
            return None, _invalid("isv.invalid-signature", "验签出错")
        try:
            ts = dt.datetime.strptime(params.get("timestamp", ""), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return None, _invalid("isv.invalid-timestamp", "非法的时间戳参数")
        # The SDK stamps local time; accept within a day either way (machines here run in UTC).
        if abs((ts - dt.datetime.now()).total_seconds()) > 86400:
            return None, _invalid("isv.invalid-timestamp", "时间戳已过期")
        return app, None

    def _respond(self, method: str, payload: dict[str, Any], charset: str = "utf-8") -> Response:
        content = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        key = method.replace(".", "_") + "_response"
        signature = rsa2(self.alipay_key, content, charset)
        text = f'{{"{key}":{content},"sign":"{signature}"}}'
        return Response(text.encode(charset), media_type=f"text/html;charset={charset}")

    async def _gateway(self, request: Request) -> Response:
        raw_query = request.url.query
        probe = dict(urllib.parse.parse_qsl(raw_query, encoding="latin-1"))
        charset = probe.get("charset", "utf-8")
        params = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True, encoding=charset))
        body = await request.body()
        if body:
            params.update(
                urllib.parse.parse_qsl(
                    body.decode("ascii", "replace"), keep_blank_values=True, encoding=charset
                )
            )
        method = params.get("method", "")
        app, error = self._verify_request(params)
        if error is not None or app is None:
            return self._respond(method or "error", error or {}, charset)
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            return self._respond(
                method,
                _invalid("isv.invalid-biz-content", "biz_content 格式错误"),
            )
        handler = {
            "alipay.trade.create": self._trade_create,
            "alipay.trade.query": self._trade_query,
            "alipay.trade.close": self._trade_close,
            "alipay.trade.refund": self._trade_refund,
            "alipay.trade.fastpay.refund.query": self._refund_query,
            "alipay.data.dataservice.bill.downloadurl.query": self._bill_url,
        }.get(method)
        if handler is None:
            return self._respond(
                method or "error",
                {
                    "code": "40004",
                    "msg": "Business Failed",
                    "sub_code": "isv.invalid-method",
                    "sub_msg": "不存在的方法名",
                },
            )
        result = await handler(app, biz, params, request)
        return self._respond(method, result, charset)

    @staticmethod
    def _ok(**fields: Any) -> dict[str, Any]:
        return {"code": "10000", "msg": "Success", **fields}

    @staticmethod
    def _biz_error(sub_code: str, sub_msg: str) -> dict[str, Any]:
        return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}

    def _open_trade(
        self, app: AlipayApp, biz: dict[str, Any], params: dict[str, str], product_code: str
    ) -> AlipayTrade | dict[str, Any]:
        try:
            total = yuan_to_fen(str(biz["total_amount"]))
            out_trade_no, subject = str(biz["out_trade_no"]), str(biz["subject"])
        except (KeyError, ValueError):
            return self._biz_error("ACQ.INVALID_PARAMETER", "参数无效")
        if total <= 0:
            return self._biz_error("ACQ.INVALID_PARAMETER", "金额无效")
        existing = self.trades.get((app.app_id, out_trade_no))
        if existing is not None:
            if existing.status != "WAIT_BUYER_PAY":
                return self._biz_error(
                    "ACQ.TRADE_HAS_SUCCESS" if existing.status == "TRADE_SUCCESS" else "ACQ.TRADE_HAS_CLOSE",
                    "交易状态不允许",
                )
            if existing.total_fen != total:
                return self._biz_error("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            return existing
        expire = None
        if biz.get("time_expire"):
            expire = dt.datetime.strptime(biz["time_expire"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ)
        trade = AlipayTrade(
            app=app,
            out_trade_no=out_trade_no,
            trade_no=provider_id("2025", 28),
            total_fen=total,
            subject=subject,
            notify_url=params.get("notify_url"),
            product_code=product_code,
            charset=params.get("charset", "utf-8"),
            buyer_id=biz.get("buyer_id") or biz.get("buyer_open_id"),
            time_expire=expire,
        )
        self.trades[(app.app_id, out_trade_no)] = trade
        return trade

    async def _trade_create(
        self, app: AlipayApp, biz: dict[str, Any], params: dict[str, str], request: Request
    ) -> dict[str, Any]:
        if not (biz.get("buyer_id") or biz.get("buyer_open_id")):
            return self._biz_error("ACQ.INVALID_PARAMETER", "缺少买家ID")
        trade = self._open_trade(app, biz, params, str(biz.get("product_code", "JSAPI_PAY")))
        if isinstance(trade, dict):
            return trade
        return self._ok(out_trade_no=trade.out_trade_no, trade_no=trade.trade_no)

    def _trade(self, app: AlipayApp, biz: dict[str, Any]) -> AlipayTrade | None:
        if biz.get("out_trade_no"):
            return self.trades.get((app.app_id, str(biz["out_trade_no"])))
        for trade in self.trades.values():
            if trade.app is app and trade.trade_no == biz.get("trade_no"):
                return trade
        return None

    def _expire(self, trade: AlipayTrade) -> None:
        if trade.status == "WAIT_BUYER_PAY" and trade.time_expire and china_now() > trade.time_expire:
            trade.status = "TRADE_CLOSED"

    async def _trade_query(
        self, app: AlipayApp, biz: dict[str, Any], params: dict[str, str], request: Request
    ) -> dict[str, Any]:
        trade = self._trade(app, biz)
        if trade is None:
            return self._biz_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        self._expire(trade)
        fields: dict[str, Any] = {
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "trade_status": trade.status,
            "total_amount": fen_to_yuan(trade.total_fen),
            "buyer_logon_id": "159****0000",
        }
        if trade.gmt_payment:
            fields["send_pay_date"] = trade.gmt_payment.strftime("%Y-%m-%d %H:%M:%S")
            fields["buyer_pay_amount"] = fen_to_yuan(trade.total_fen)
        return self._ok(**fields)

    async def _trade_close(
        self, app: AlipayApp, biz: dict[str, Any], params: dict[str, str], request: Request
    ) -> dict[str, Any]:
        trade = self._trade(app, biz)
        if trade is None:
            return self._biz_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        if trade.status != "WAIT_BUYER_PAY":
            return self._biz_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade.status = "TRADE_CLOSED"
        return self._ok(trade_no=trade.trade_no, out_trade_no=trade.out_trade_no)

    async def _trade_refund(
        self, app: AlipayApp, biz: dict[str, Any], params: dict[str, str], request: Request
    ) -> dict[str, Any]:
        trade = self._trade(app, biz)
        if trade is None:
            return self._biz_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        try:
            amount = yuan_to_fen(str(biz["refund_amount"]))
        except (KeyError, ValueError):
            return self._biz_error("ACQ.INVALID_PARAMETER", "退款金额无效")
        request_no = str(biz.get("out_request_no") or trade.out_trade_no)
        fund_change = "N"
        if request_no in trade.refunds:
            if trade.refunds[request_no][0] != amount:
                return self._biz_error("ACQ.REQUEST_AMOUNT_EXCEED", "退款请求号已用于其他金额")
        else:
            if trade.status != "TRADE_SUCCESS":
                return self._biz_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if amount <= 0 or trade.refunded + amount > trade.total_fen:
                return self._biz_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            trade.refunds[request_no] = (amount, china_now())
            fund_change = "Y"
            if trade.refunded == trade.total_fen:
                trade.status = "TRADE_CLOSED"
            if trade.notify_url:
                self.notifier.later(
                    0.05, lambda: self.send_refund_notification(trade, request_no, Delivery())
                )
        return self._ok(
            trade_no=trade.trade_no,
            out_trade_no=trade.out_trade_no,
            buyer_logon_id="159****0000",
            fund_change=fund_change,
            refund_fee=fen_to_yuan(trade.refunded),
            gmt_refund_pay=trade.refunds[request_no][1].strftime("%Y-%m-%d %H:%M:%S"),
        )

    async def _refund_query(
        self, app: AlipayApp, biz: dict[str, Any], params: dict[str, str], request: Request
    ) -> dict[str, Any]:
        trade = self._trade(app, biz)
        request_no = str(biz.get("out_request_no", ""))
        if trade is None or request_no not in trade.refunds:
            return self._ok()  # Alipay answers success with no refund fields for unknown refunds
        fen, at = trade.refunds[request_no]
        return self._ok(
            trade_no=trade.trade_no,
            out_trade_no=trade.out_trade_no,
            out_request_no=request_no,
            refund_amount=fen_to_yuan(fen),
            total_amount=fen_to_yuan(trade.total_fen),
            refund_status="REFUND_SUCCESS",
            gmt_refund_pay=at.strftime("%Y-%m-%d %H:%M:%S"),
        )

    async def _bill_url(
        self, app: AlipayApp, biz: dict[str, Any], params: dict[str, str], request: Request
    ) -> dict[str, Any]:
        try:
            bill_date = dt.date.fromisoformat(str(biz.get("bill_date")))
        except ValueError:
            return self._biz_error("isv.invalid-bill-date", "账单日期格式不正确")
        if biz.get("bill_type") != "trade":
            return self._biz_error("isv.invalid-bill-type", "账单类型不正确")
        rows = bill_rows(self.trades.values(), app, bill_date, self.extra_bill_rows.get(bill_date, []))
        if not rows:
            return self._biz_error("isp.bill_not_exist", "账单不存在")
        content = render_alipay_zip(app.pid, bill_date, rows, exported_at=china_now())
        if self.bill_tamper == "truncate":
            content = content[: len(content) * 2 // 3]
        token = secrets.token_urlsafe(16)
        self._bills[token] = (time.monotonic() + 30, content)
        base = self.base_url or str(request.base_url).rstrip("/")
        return self._ok(bill_download_url=f"{base}/_bills/{token}")

    async def _bill_file(self, request: Request) -> Response:
        expires, content = self._bills.pop(request.path_params["token"], (0.0, b""))
        if time.monotonic() > expires:
            return Response("链接已过期", status_code=404)
        return Response(
            content,
            media_type="application/oct-stream",
            headers={"Content-Disposition": "attachment; filename=bill.csv.zip"},
        )

    # -- notifications --------------------------------------------------------------------------

    def _notification(
        self, trade: AlipayTrade, fields: dict[str, str], delivery: Delivery
    ) -> OutgoingNotification:
        charset = self.notify_charset or trade.charset
        now = china_now().strftime("%Y-%m-%d %H:%M:%S")
        params: dict[str, str] = {
            "notify_time": now,
            "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(16),
            "charset": charset,
            "version": "1.0",
            "sign_type": "RSA2",
            "app_id": trade.app.app_id,
            "auth_app_id": trade.app.app_id,
            "seller_id": trade.app.pid,
            "seller_email": "biller@example.cn",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_id": trade.buyer_id or "2088102177" + "000000",
            "buyer_logon_id": "159****0000",
            "subject": trade.subject,
            "total_amount": fen_to_yuan(trade.total_fen + (1 if delivery.forge == "amount_signed" else 0)),
            "gmt_create": trade.gmt_create.strftime("%Y-%m-%d %H:%M:%S"),
            **fields,
        }
        if delivery.forge == "merchant":
            params["app_id"] = params["auth_app_id"] = "2021000000000000"
            params["seller_id"] = "2088000000000000"
        unsigned = {k: v for k, v in params.items() if k not in ("sign", "sign_type")}
        key = self.alipay_key if delivery.forge != "signature" else new_rsa_key()
        params["sign"] = rsa2(key, sign_content(unsigned), charset)
        if delivery.forge == "amount":
            params["total_amount"] = fen_to_yuan(trade.total_fen * 100)
        body = urllib.parse.urlencode(params, encoding=charset).encode("ascii")
        return OutgoingNotification(
            url=trade.notify_url or "",
            body=body,
            headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"},
            label=f"{'refund' if 'out_biz_no' in fields else 'pay'}:{trade.out_trade_no}",
            delivery=delivery,
        )

    async def pay(
        self, trade: AlipayTrade, delivery: Delivery, *, paid_at: dt.datetime | None = None
    ) -> list[Any]:
        self._expire(trade)
        if trade.status == "WAIT_BUYER_PAY":
            trade.status = "TRADE_SUCCESS"
            trade.gmt_payment = (paid_at or china_now()).astimezone(CHINA_TZ)
        if trade.status != "TRADE_SUCCESS" or not trade.notify_url or trade.gmt_payment is None:
            return []
        amount = fen_to_yuan(trade.total_fen)
        note = self._notification(
            trade,
            {
                "trade_status": "TRADE_SUCCESS",
                "gmt_payment": trade.gmt_payment.strftime("%Y-%m-%d %H:%M:%S"),
                "receipt_amount": amount,
                "invoice_amount": amount,
                "buyer_pay_amount": amount,
                "point_amount": "0.00",
                "fund_bill_list": json.dumps([{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}]),
            },
            delivery,
        )
        return await self.notifier.submit(note)

    async def send_refund_notification(
        self, trade: AlipayTrade, request_no: str, delivery: Delivery
    ) -> list[Any]:
        _fen, at = trade.refunds[request_no]
        note = self._notification(
            trade,
            {
                "trade_status": "TRADE_CLOSED" if trade.refunded == trade.total_fen else "TRADE_SUCCESS",
                "out_biz_no": request_no,
                "refund_fee": fen_to_yuan(trade.refunded),
                "gmt_refund": at.strftime("%Y-%m-%d %H:%M:%S.000"),
                "gmt_payment": trade.gmt_payment.strftime("%Y-%m-%d %H:%M:%S") if trade.gmt_payment else "",
            },
            delivery,
        )
        return await self.notifier.submit(note)

    def _app_pay_trade(self, order_string: str) -> AlipayTrade | str:
        """What the Alipay app does with an order string: check its signature, open the trade."""
        probe = dict(urllib.parse.parse_qsl(order_string, encoding="latin-1"))
        params = dict(
            urllib.parse.parse_qsl(
                order_string, keep_blank_values=True, encoding=probe.get("charset", "utf-8")
            )
        )
        app, error = self._verify_request(params)
        if error is not None or app is None:
            return str((error or {}).get("sub_code"))
        if params.get("method") != "alipay.trade.app.pay":
            return "isv.invalid-method"
        biz = json.loads(params.get("biz_content") or "{}")
        trade = self._open_trade(app, biz, params, str(biz.get("product_code", "QUICK_MSECURITY_PAY")))
        return trade if isinstance(trade, AlipayTrade) else str(trade.get("sub_code"))

    async def _control_pay(self, request: Request) -> Response:
        payload = await request.json()
        if payload.get("order_string"):
            trade_or_error = self._app_pay_trade(payload["order_string"])
            if isinstance(trade_or_error, str):
                return JSONResponse({"error": trade_or_error}, status_code=400)
            trade: AlipayTrade | None = trade_or_error
        else:
            trade = next((t for (_, no), t in self.trades.items() if no == payload.get("out_trade_no")), None)
        if trade is None:
            return JSONResponse({"error": "no such trade"}, status_code=404)
        self._expire(trade)
        if trade.status == "TRADE_CLOSED" and trade.gmt_payment is None:
            return JSONResponse({"error": "ACQ.TRADE_HAS_CLOSE"}, status_code=400)
        paid_at = dt.datetime.fromisoformat(payload["paid_at"]) if payload.get("paid_at") else None
        records = await self.pay(trade, parse_delivery(payload), paid_at=paid_at)
        return JSONResponse(
            {
                "transaction_id": trade.trade_no,
                "out_trade_no": trade.out_trade_no,
                "state": trade.status,
                "deliveries": deliveries_json(records),
            }
        )

    async def _control_order(self, request: Request) -> Response:
        trade = next(
            (t for (_, no), t in self.trades.items() if no == request.path_params["out_trade_no"]), None
        )
        if trade is None:
            return JSONResponse({"error": "no such trade"}, status_code=404)
        self._expire(trade)
        return JSONResponse(
            {
                "out_trade_no": trade.out_trade_no,
                "trade_no": trade.trade_no,
                "state": trade.status,
                "total_fen": trade.total_fen,
                "refunds": {k: v[0] for k, v in trade.refunds.items()},
            }
        )
