"""The column's web app: the resident's pages, the cashier's notify endpoint, the school's back office.

Pages are in Chinese for residents; the back office (``/operator/...``) is a small JSON API for the
school's finance office, behind a bearer token of its own.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from school_fees import signing
from school_fees.platform import Config, Platform, PlatformError, TokenInvalid, pkce_pair
from school_fees.store import Store

log = logging.getLogger("school_fees")
COOKIE = "sf_session"
NOTIFY_PATH = "/cashier/notify"
SCHOOL = "亳州市第一中学"


@dataclass(frozen=True)
class Settings:
    platform: Config
    db_path: str
    operator_token: str  # the school's back office; empty turns /operator off
    demo_fee_fen: int = 128000
    demo_student: str = "李明轩"
    demo_term: str = "2026年秋季学期"

    @classmethod
    def from_env(cls) -> Settings:
        e = os.environ
        public = e["SCHOOL_FEES_PUBLIC_URL"].rstrip("/")
        return cls(
            platform=Config(
                issuer=e["SCHOOL_FEES_ISSUER"].rstrip("/"),
                client_id=e["SCHOOL_FEES_CLIENT_ID"],
                client_secret=e["SCHOOL_FEES_CLIENT_SECRET"],
                cashier_key=e["SCHOOL_FEES_CASHIER_KEY"],
                redirect_uri=public + "/oidc/callback",
                scope=e.get("SCHOOL_FEES_SCOPE", "openid phone"),
                sub_account=e.get("SCHOOL_FEES_SUB_ACCOUNT", "school-01"),
            ),
            db_path=e.get("SCHOOL_FEES_DB", "school_fees.db"),
            operator_token=e.get("SCHOOL_FEES_OPERATOR_TOKEN", ""),
            demo_fee_fen=int(e.get("SCHOOL_FEES_DEMO_FEE_FEN", "128000")),
        )


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · {SCHOOL}</title>
<style>body{{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;padding:1.2rem;
font-size:1.1rem}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;
padding:.5rem;text-align:left}}button,a.button{{font-size:1.1rem;padding:.6rem 1rem}}</style>
</head><body><main><h1>{html.escape(title)}</h1>
{body}
</main></body></html>"""
    return HTMLResponse(doc, status_code=status, headers={"cache-control": "no-store"})


def mask_phone(phone: str) -> str:
    digits = phone.removeprefix("+86")
    return digits[:3] + "****" + digits[-4:] if len(digits) == 11 else "已授权"


# Refusals that may pass when the same request is signed anew later.
RETRYABLE = {"openplatform.cashier_timestamp_stale", "openplatform.cashier_nonce_replayed"}
STATUS = {"unpaid": "待缴费", "paying": "待支付", "paid": "已缴费"}


def create_app(settings: Settings | None = None) -> Starlette:
    cfg = settings or Settings.from_env()
    store = Store(cfg.db_path)
    state: dict[str, Platform] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            state["platform"] = Platform(cfg.platform, http)
            yield

    def platform() -> Platform:
        return state["platform"]

    def unavailable(e: PlatformError) -> HTMLResponse:
        log.warning("platform refused: %s", e)
        return page(
            "暂时无法办理",
            f'<p id="error">我家亳州平台拒绝了本栏目的请求（{html.escape(e.code)}）。'
            "本栏目可能已被平台停用，请稍后再试或联系学校财务室。</p>",
            502,
        )

    # --- the resident ------------------------------------------------------------------------------

    async def home(request: Request) -> Response:
        if store.session(request.cookies.get(COOKIE, "")):
            return RedirectResponse("/fees", 303)
        return page(
            "学费缴纳",
            f"<p>{SCHOOL}学生家长可在此查询并缴纳学费。</p>"
            '<p><a class="button" id="login" href="/login">使用我家亳州账号登录</a></p>',
        )

    async def login(request: Request) -> Response:
        verifier, challenge = pkce_pair()
        state_, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        store.begin_login(state_, nonce, verifier)
        try:
            url = await platform().authorize_url(state=state_, nonce=nonce, challenge=challenge)
        except (PlatformError, httpx.HTTPError) as e:
            return unavailable(e if isinstance(e, PlatformError) else PlatformError(502, "unreachable"))
        return RedirectResponse(url, 302)

    async def callback(request: Request) -> Response:
        q = request.query_params
        pending = store.take_login(q.get("state", ""))
        if pending is None:
            return page(
                "登录已过期", '<p id="error">登录请求已失效，请<a href="/login">重新登录</a>。</p>', 400
            )
        if q.get("error") == "access_denied":
            return page(
                "未授权",
                '<p id="denied">您已拒绝授权，本栏目未获取您的任何信息。</p>'
                '<p><a href="/login">重新登录</a></p>',
            )
        if "code" not in q:
            return page("登录失败", f'<p id="error">登录失败（{html.escape(q.get("error", ""))}）。</p>', 400)
        try:
            tokens = await platform().exchange(q["code"], pending["verifier"])
            id_claims = await platform().verify_id_token(tokens["id_token"], nonce=pending["nonce"])
            granted = str(tokens.get("scope", "openid"))
            claims = await platform().userinfo(tokens["access_token"], granted)
        except PlatformError as e:
            return unavailable(e)
        if claims.get("sub") != id_claims["sub"]:
            return page("登录失败", '<p id="error">身份信息不一致，请重新登录。</p>', 400)
        sid = store.new_session(
            sub=id_claims["sub"],
            scope=granted,
            claims=claims,
            access_token=tokens["access_token"],
            ttl=int(tokens.get("expires_in", 600)),
        )
        store.ensure_demo_bill(
            id_claims["sub"], student=cfg.demo_student, term=cfg.demo_term, amount_fen=cfg.demo_fee_fen
        )
        resp = RedirectResponse("/fees", 303)
        resp.set_cookie(COOKIE, sid, httponly=True, secure=True, samesite="lax", max_age=600)
        return resp

    def expired() -> Response:
        resp = page("登录已失效", '<p id="error">登录已失效，请<a href="/login">重新登录</a>。</p>', 401)
        resp.delete_cookie(COOKIE)
        return resp

    async def fees(request: Request) -> Response:
        sess = store.session(request.cookies.get(COOKIE, ""))
        if sess is None:
            return expired()
        try:
            # Each visit checks the token is still live (the resident may have withdrawn the
            # authorisation, or the platform disabled the column).
            claims = await platform().userinfo(sess["access_token"], sess["scope"])
        except TokenInvalid:
            store.end_session(sess["id"])
            return expired()
        except PlatformError as e:
            return unavailable(e)
        phone = mask_phone(claims["phone_number"]) if "phone_number" in claims else "未授权"
        name = html.escape(claims["name"]) if "name" in claims else "未授权"
        rows = []
        for b in store.bills_of(sess["sub"]):
            action = ""
            if b["status"] != "paid":
                action = (
                    f'<form method="post" action="/fees/{b["id"]}/pay">'
                    '<button type="submit">缴费</button></form>'
                )
            refunded = f"（已退款 {yuan(b['refunded_fen'])} 元）" if b["refunded_fen"] else ""
            rows.append(
                f'<tr data-bill="{b["id"]}"><td>{html.escape(b["student"])}</td>'
                f"<td>{html.escape(b['title'])}</td>"
                f"<td>{yuan(b['amount_fen'])} 元</td>"
                f'<td class="status">{STATUS[b["status"]]}{refunded}</td><td>{action}</td></tr>'
            )
        return page(
            "学费缴纳",
            f'<dl id="claims"><dt>手机号</dt><dd id="phone">{phone}</dd>'
            f'<dt>姓名</dt><dd id="name">{name}</dd></dl>'
            "<table><tr><th>学生</th><th>项目</th><th>金额</th><th>状态</th><th></th></tr>"
            + "".join(rows)
            + "</table>",
        )

    async def pay(request: Request) -> Response:
        sess = store.session(request.cookies.get(COOKIE, ""))
        if sess is None:
            return expired()
        bill = store.bill(request.path_params["bill_id"])
        if bill is None or bill["sub"] != sess["sub"]:
            return page("未找到", '<p id="error">未找到该缴费项目。</p>', 404)
        if bill["status"] == "paid":
            return RedirectResponse("/fees", 303)
        try:
            # The bill's own number is the order's idempotency key: paying again, or retrying after
            # a lost answer, opens no second order.
            order = await platform().create_order(
                out_order_no=bill["out_order_no"],
                sub=sess["sub"],
                amount_fen=bill["amount_fen"],
                description=f"{SCHOOL}{bill['title']}",
            )
            if order["status"] == "closed":
                # Its payment window passed before the platform's notice reached us: a new number.
                store.reopen(bill["out_order_no"])
                bill = store.bill(bill["id"]) or bill
                order = await platform().create_order(
                    out_order_no=bill["out_order_no"],
                    sub=sess["sub"],
                    amount_fen=bill["amount_fen"],
                    description=f"{SCHOOL}{bill['title']}",
                )
        except PlatformError as e:
            return unavailable(e)
        store.set_order(bill["id"], order["id"])
        # The app's JS bridge opens its cashier for the order; the page returns to the bills after.
        oid = html.escape(order["id"])
        return page(
            "确认缴费",
            f"<p>{html.escape(bill['student'])} {html.escape(bill['title'])}："
            f'<strong id="amount">{yuan(bill["amount_fen"])} 元</strong></p>'
            f'<p><button id="pay" data-order-id="{oid}">在我家亳州中支付</button></p>'
            '<p id="hint"></p>'
            "<script>document.getElementById('pay').addEventListener('click', async (e) => {"
            "  const bridge = window.WojiaJSBridge;"
            "  if (!bridge) {"
            "    document.getElementById('hint').textContent = '请在我家亳州应用中打开本页面。'; return; }"
            "  await bridge.pay(e.target.dataset.orderId);"
            "  location.href = '/fees';"
            "});</script>",
        )

    # --- the cashier's notification ----------------------------------------------------------------

    async def notify(request: Request) -> Response:
        body = await request.body()
        problem = signing.verify(
            request.headers,
            app_id=cfg.platform.client_id,
            key=cfg.platform.cashier_key,
            method="POST",
            path=NOTIFY_PATH,  # the path of the notify_url the admin registered
            body=body,
        )
        if problem is None and not store.spend_nonce(request.headers["x-nonce"]):
            problem = "nonce_replayed"
        if problem is not None:
            log.warning("notification refused: %s", problem)
            return JSONResponse({"code": "FAIL", "message": problem}, status_code=401)
        notice = json.loads(body)
        first = store.record_notice(notice)
        log.info(
            "notice %s %s (%s)", notice.get("notice_id"), notice.get("event"), "new" if first else "again"
        )
        # Acknowledged whether new or a redelivery: the platform stops once it reads SUCCESS.
        return JSONResponse({"code": "SUCCESS"})

    # --- the school's back office --------------------------------------------------------------------

    def operator(request: Request) -> bool:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        return bool(cfg.operator_token) and hmac.compare_digest(given.encode(), cfg.operator_token.encode())

    def refused(e: PlatformError) -> JSONResponse:
        return JSONResponse(
            {"error": "platform_refused", "platform_status": e.status, "code": e.code, "title": e.title},
            status_code=502,
        )

    def forbidden() -> JSONResponse:
        return JSONResponse({"error": "operator_token_required"}, status_code=401)

    async def op_bills(request: Request) -> Response:
        if not operator(request):
            return forbidden()
        return JSONResponse({"bills": store.all("SELECT * FROM bill ORDER BY id")})

    async def op_bill(request: Request) -> Response:
        """A bill with its order read again from the platform (refund statuses follow there)."""
        if not operator(request):
            return forbidden()
        bill = store.bill(request.path_params["bill_id"])
        if bill is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        order = None
        if bill["order_id"]:
            try:
                order = await platform().order(bill["order_id"])
            except PlatformError as e:
                return refused(e)
            store.set_refunded(bill["id"], int(order["refunded_fen"]))
            for r in order["refunds"]:
                store.refund_answered(r["out_refund_no"], r["id"], r["status"])
        return JSONResponse(
            {"bill": store.bill(bill["id"]), "order": order, "refunds": store.refunds_of(bill["id"])}
        )

    async def op_refund(request: Request) -> Response:
        if not operator(request):
            return forbidden()
        bill = store.bill(request.path_params["bill_id"])
        body = await request.json()
        if bill is None or not bill["order_id"]:
            return JSONResponse({"error": "not_found"}, status_code=404)
        amount = body.get("amount_fen")
        if not isinstance(amount, int) or amount <= 0:
            return JSONResponse({"error": "amount_fen must be a positive integer (fen)"}, status_code=422)
        no = str(body.get("out_refund_no") or "SR" + secrets.token_hex(8))
        row = store.refund_for(no, bill["id"], amount, body.get("reason"))
        try:
            r = await platform().refund(
                bill["order_id"], out_refund_no=no, amount_fen=row["amount_fen"], reason=row["reason"]
            )
        except PlatformError as e:
            if 400 <= e.status < 500 and e.code not in RETRYABLE:
                store.refund_answered(no, None, "refused")  # never made: sending it again cannot help
            return refused(e)
        store.refund_answered(no, r["id"], r["status"])
        return JSONResponse({"refund": r}, status_code=201)

    async def op_templates(request: Request) -> Response:
        if not operator(request):
            return forbidden()
        try:
            if request.method == "POST":
                body = await request.json()
                return JSONResponse(await platform().propose_template(body["key"], body["text"]), 201)
            return JSONResponse(await platform().templates())
        except PlatformError as e:
            return refused(e)

    async def op_message(request: Request) -> Response:
        """Send the bill's resident a templated message (an approved template of this column)."""
        if not operator(request):
            return forbidden()
        bill = store.bill(request.path_params["bill_id"])
        if bill is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        body = await request.json()
        key = str(body.get("idempotency_key") or "SM" + secrets.token_hex(8))
        row = store.message_for(key, bill["sub"], body["template"], body.get("params", {}))
        try:
            sent = await platform().send_message(
                sub=row["sub"],
                template=row["template"],
                params=json.loads(row["params"]),
                idempotency_key=key,
            )
        except PlatformError as e:
            return refused(e)
        store.message_sent(key, sent["id"])
        return JSONResponse({"message": sent}, status_code=201)

    async def op_notices(request: Request) -> Response:
        if not operator(request):
            return forbidden()
        return JSONResponse({"notices": store.notices()})

    async def op_residents(request: Request) -> Response:
        if not operator(request):
            return forbidden()
        return JSONResponse({"residents": store.residents()})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/", home),
            Route("/login", login),
            Route("/oidc/callback", callback),
            Route("/fees", fees),
            Route("/fees/{bill_id}/pay", pay, methods=["POST"]),
            Route(NOTIFY_PATH, notify, methods=["POST"]),
            Route("/operator/bills", op_bills),
            Route("/operator/bills/{bill_id}", op_bill),
            Route("/operator/bills/{bill_id}/refunds", op_refund, methods=["POST"]),
            Route("/operator/bills/{bill_id}/messages", op_message, methods=["POST"]),
            Route("/operator/templates", op_templates, methods=["GET", "POST"]),
            Route("/operator/notices", op_notices),
            Route("/operator/residents", op_residents),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
