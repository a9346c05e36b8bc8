"""The cashier for external columns (issue 20, item 3), over HTTP against the real app and the payment
sandboxes: a column's server opens an order (signed), the resident pays it with WeChat Pay or Alipay,
the column's own server (a tiny HTTP receiver on loopback) is told once with a signed notification
even after it failed first, refunds part of it and is refused more than was paid; finance sees the
payment with the column's name and the day's reconciliation matched it. Refused, with problem+json,
a stable code and an audit entry, nothing else written: a forged signature, a replayed nonce, a stale
timestamp, another column's order, a refund over the paid amount, a disabled column's calls."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwt
from sqlmodel import col, func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app_api.core import signing
from app_api.core.db import session_scope, sessionmaker, utcnow
from app_api.core.jobs import outbox, runner
from app_api.core.jobs.models import JobStatus, OutboxMessage
from app_api.platform.audit.models import AuditEvent
from app_api.platform.openplatform import cashier_notify
from app_api.platform.openplatform.cashier_models import CashierNonce, CashierNotice, CashierOrder
from tests.app_api.test_openplatform_oidc import Col, jwks, register, sign_in
from tests.columns.utilities.utilities_helpers import pay_at_provider, wait_until
from tests.conftest import LoginFn

API = "/api/v1"
ORDERS = "/api/v1/openplatform/cashier/orders"


# --- the column's server, reduced to its notify endpoint ----------------------------------------------


@dataclass
class Receiver:
    """Verifies each notification's signature with the column's key; fails the first ``fail`` posts."""

    secrets: dict[str, str] = field(default_factory=dict)  # client_id -> cashier key
    fail: dict[str, int] = field(default_factory=dict)  # client_id -> posts still to refuse
    seen: list[dict[str, Any]] = field(default_factory=list)
    acked: list[dict[str, Any]] = field(default_factory=list)
    forged: int = 0
    url: str = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        client_id = request.headers.get("x-app-id", "")
        problem = signing.verify_request(
            dict(request.headers),
            secret=self.secrets.get(client_id, "?"),
            method="POST",
            path="/notify",
            body=body,
        )
        if problem is not None:
            self.forged += 1
            return JSONResponse({"code": "FAIL", "message": problem}, status_code=401)
        note = {**json.loads(body), "client_id": client_id}
        self.seen.append(note)
        if self.fail.get(client_id, 0) > 0:
            self.fail[client_id] -= 1
            return JSONResponse({"code": "FAIL", "message": "系统繁忙"}, status_code=503)
        self.acked.append(note)
        return JSONResponse({"code": "SUCCESS"})

    def for_order(self, order_id: str, acked: bool = False) -> list[dict[str, Any]]:
        return [n for n in (self.acked if acked else self.seen) if n["order_id"] == order_id]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    from payments.sandbox.common import serve_in_thread

    rec = Receiver()
    server = serve_in_thread(Starlette(routes=[Route("/notify", rec.handle, methods=["POST"])]))
    rec.url = server.url
    yield rec
    server.stop()


@pytest.fixture(scope="module")
async def pay_sandbox(live_url: str) -> AsyncIterator[dict[str, str]]:
    """The three providers' sandboxes on loopback with merchants of this module; notifications go to
    the app served on loopback (as in tests/columns/gov_services/test_fees.py)."""
    from payments import registry
    from payments.sandbox.common import free_port, serve_in_thread

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    providers, sandboxes = registry.build_sandbox_providers(base)
    server = serve_in_thread(sandboxes.asgi_app(), port=port)
    saved = (registry._providers, registry._sandboxes, registry._notify_base)
    registry.configure(providers, notify_base=live_url, sandbox_set=sandboxes)
    yield {name: f"{base}/{name}" for name in ("wechat_v2", "wechat_v3", "alipay")}
    with registry._lock:
        registry._providers, registry._sandboxes, registry._notify_base = saved
    server.stop()


@dataclass
class Cashier:
    col: Col
    key: str
    name: str


async def _cashier(client: httpx.AsyncClient, admin: dict[str, str], receiver: Receiver) -> Cashier:
    col = await register(client, admin)
    r = await client.put(
        f"{API}/admin/external-columns/{col.id}/cashier",
        headers=admin,
        json={"notify_url": f"{receiver.url}/notify", "sub_accounts": ["fines-01", "fines-02"]},
    )
    assert r.status_code == 200, r.text
    key = r.json()["cashier_secret"]
    assert key
    # Changing the address does not show the key again.
    again = await client.put(
        f"{API}/admin/external-columns/{col.id}/cashier",
        headers=admin,
        json={"notify_url": f"{receiver.url}/notify", "sub_accounts": ["fines-01", "fines-02"]},
    )
    assert again.status_code == 200 and again.json()["cashier_secret"] is None
    receiver.secrets[col.client_id] = key
    listed = (await client.get(f"{API}/admin/external-columns", headers=admin)).json()["columns"]
    return Cashier(col, key, next(c["name"] for c in listed if c["id"] == col.id))


def _signed(
    c: Cashier, method: str, path: str, body: dict[str, Any] | None = None, **over: Any
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body, ensure_ascii=False).encode() if body is not None else b""
    signed = signing.signed_headers(
        app_id=c.col.client_id,
        secret=over.pop("secret", c.key),
        method=method,
        path=path,
        body=raw,
        now=over.pop("now", None),
    )
    headers = {**signed.headers, "content-type": "application/json", **over}
    return raw, headers


async def _call(
    http: httpx.AsyncClient,
    c: Cashier,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    **over: Any,
) -> httpx.Response:
    raw, headers = _signed(c, method, path, body, **over)
    return await http.request(method, path, content=raw, headers=headers)


async def _refunds_reach(http: httpx.AsyncClient, c: Cashier, order_id: str, *statuses: str) -> None:
    """Wait until the column sees the order's refunds in these states (in any order)."""

    async def reached() -> bool:
        got = (await _call(http, c, "GET", f"{ORDERS}/{order_id}")).json()
        return sorted(x["status"] for x in got["refunds"]) == sorted(statuses)

    await wait_until(reached, timeout=30)


async def _subject(client: httpx.AsyncClient, resident: dict[str, str], col: Col) -> str:
    tokens = await sign_in(client, resident, col, scope="openid")
    claims = jwt.decode(tokens["id_token"], await jwks(client), algorithms=["ES256"]).claims
    return str(claims["sub"])


def _order(sub: str, amount_fen: int = 1000, **over: Any) -> dict[str, Any]:
    return {
        "out_order_no": "F" + secrets.token_hex(8),
        "sub": sub,
        "amount_fen": amount_fen,
        "description": "交通违法罚款 皖S12345",
        "sub_account": "fines-01",
        **over,
    }


async def _audited(action: str, subject_id: str) -> list[AuditEvent]:
    async with sessionmaker()() as s:
        rows = await s.exec(
            select(AuditEvent).where(AuditEvent.action == action, AuditEvent.subject_id == subject_id)
        )
        return list(rows.all())


async def _count(model: Any, **where: Any) -> int:
    async with sessionmaker()() as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return int((await s.exec(q)).one())


@pytest.fixture
async def http(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A column's server talking to the platform over real HTTP."""
    async with httpx.AsyncClient(base_url=live_url, timeout=30) as c:
        yield c


# --- the whole flow -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["wechat_v2", "alipay"])
async def test_order_paid_told_once_after_a_failure_refunded_in_part_and_reconciled(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    login: LoginFn,
    receiver: Receiver,
    pay_sandbox: dict[str, str],
    provider: str,
) -> None:
    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    resident = await login()
    sub = await _subject(client, resident, c.col)

    body = _order(sub, 1000)
    r = await _call(http, c, "POST", ORDERS, body)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "created" and order["amount_fen"] == 1000 and order["sub_account"] == "fines-01"
    # The same order number and content again (a lost answer): the same order, 200.
    r = await _call(http, c, "POST", ORDERS, body)
    assert r.status_code == 200 and r.json()["id"] == order["id"], r.text
    # The same number for another amount is refused.
    r = await _call(http, c, "POST", ORDERS, {**body, "amount_fen": 1})
    assert r.status_code == 409 and r.json()["code"] == "openplatform.cashier_order_no_reused", r.text

    # The resident sees the order with the column's name and pays it in the app.
    seen = (await client.get(order["pay_path"], headers=resident)).json()
    assert seen["column_name"] == c.name and seen["amount_fen"] == 1000 and seen["status"] == "created"
    receiver.fail[c.col.client_id] = 1  # the column's server is down for its first notification
    r = await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": provider})
    assert r.status_code == 200, r.text
    started = r.json()
    await pay_at_provider(pay_sandbox, provider, started["out_trade_no"], started["client_params"])

    async def acknowledged() -> bool:
        return len(receiver.for_order(order["id"], acked=True)) >= 1

    await wait_until(acknowledged, timeout=30)
    tries = receiver.for_order(order["id"])
    assert len(tries) == 2 and len({t["notice_id"] for t in tries}) == 1  # failed once, then told
    [note] = receiver.for_order(order["id"], acked=True)
    assert note["event"] == "order.paid" and note["amount_fen"] == 1000
    assert note["out_order_no"] == body["out_order_no"] and note["out_trade_no"] == started["out_trade_no"]
    assert note["provider"] == provider and note["sub_account"] == "fines-01"

    async def recorded() -> bool:
        async with session_scope() as s:
            n = await s.get(CashierNotice, note["notice_id"])
            return n is not None and n.status == "delivered"

    await wait_until(recorded, timeout=10)
    # Nothing is sent again once recorded: neither the relay nor a stray second run of the job.
    assert await outbox.relay() >= 0
    assert await cashier_notify.deliver(note["notice_id"]) == "skipped"
    await asyncio.sleep(0.5)
    assert len(receiver.for_order(order["id"])) == 2 and receiver.forged == 0
    async with session_scope() as s:
        notice = await s.get(CashierNotice, note["notice_id"])
        assert notice is not None and notice.status == "delivered" and notice.attempts == 2
    assert len(await _audited("openplatform.cashier_notice_delivered", c.col.id)) == 1

    r = await _call(http, c, "GET", f"{ORDERS}/{order['id']}")
    assert r.status_code == 200 and r.json()["status"] == "paid" and r.json()["provider"] == provider, r.text
    # Paying again is refused.
    again = await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": provider})
    assert again.status_code == 409 and again.json()["code"] == "openplatform.cashier_order_paid"

    # A partial refund, idempotent by the column's refund number; more than is left is refused.
    refund = {"out_refund_no": "R" + secrets.token_hex(6), "amount_fen": 300, "reason": "多缴退回"}
    r = await _call(http, c, "POST", f"{ORDERS}/{order['id']}/refunds", refund)
    assert r.status_code == 201, r.text
    first = r.json()
    r = await _call(http, c, "POST", f"{ORDERS}/{order['id']}/refunds", refund)
    assert r.status_code == 200 and r.json()["id"] == first["id"], r.text
    over = {"out_refund_no": "R" + secrets.token_hex(6), "amount_fen": 701}
    r = await _call(http, c, "POST", f"{ORDERS}/{order['id']}/refunds", over)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (
        r.json()["code"] == "openplatform.cashier_refund_exceeds_paid" and r.json()["refundable_fen"] == 700
    )
    assert r.json()["title"] == "退款金额超过可退金额"
    refusals = await _audited("openplatform.cashier_refused", c.col.id)
    [over_refused] = [e for e in refusals if e.data["reason"] == "refund_exceeds_paid"]
    assert over_refused.data["amount_fen"] == 701 and over_refused.data["refundable_fen"] == 700
    r = await _call(http, c, "POST", f"{ORDERS}/{order['id']}/refunds", {**refund, "amount_fen": 200})
    assert r.status_code == 409 and r.json()["code"] == "openplatform.cashier_refund_no_reused", r.text

    await _refunds_reach(http, c, order["id"], "succeeded")
    got = (await _call(http, c, "GET", f"{ORDERS}/{order['id']}")).json()
    assert got["refunded_fen"] == 300 and got["refunds"][0]["amount_fen"] == 300
    async with httpx.AsyncClient(base_url=pay_sandbox[provider], timeout=30) as sb:
        at_provider = (await sb.get(f"/_sandbox/orders/{started['out_trade_no']}")).json()
    assert len(at_provider["refunds"]) == 1  # one refund at the provider, whatever was resent

    # Finance: the column's payments by its name, and the day's reconciliation matched it.
    finance = await login(roles=["finance"])
    day = (await client.get(f"{API}/finance/external-columns/payments", headers=finance)).json()
    [mine] = [x for x in day["columns"] if x["column_id"] == c.col.id]
    assert mine["column_name"] == c.name and mine["paid_count"] == 1
    assert mine["paid_fen"] == 1000 and mine["refunded_fen"] == 300
    assert mine["orders"][0]["out_trade_no"] == started["out_trade_no"]
    assert mine["orders"][0]["reconciliation"] == "not_run" and mine["unmatched_count"] == 0
    assert (await client.get(f"{API}/finance/external-columns/payments", headers=resident)).status_code == 403

    from app_api.core.clock import china_today

    run = await client.post(
        f"{API}/payments/finance/reconciliation/runs",
        headers=finance,
        json={"provider": provider, "bill_date": china_today().isoformat()},
    )
    assert run.status_code == 202, run.text
    run_id = run.json()["id"]

    async def finished() -> bool:
        got = (
            await client.get(f"{API}/payments/finance/reconciliation/runs/{run_id}", headers=finance)
        ).json()
        return bool(got["status"] != "running")

    await wait_until(finished, timeout=60)
    result = (
        await client.get(f"{API}/payments/finance/reconciliation/runs/{run_id}", headers=finance)
    ).json()
    assert result["status"] == "done", result
    items = (
        await client.get(f"{API}/payments/finance/reconciliation/runs/{run_id}/items", headers=finance)
    ).json()
    assert all(i.get("out_trade_no") != started["out_trade_no"] for i in items)
    assert result["totals"]["provider_paid_count"] >= 1
    # The column's listing shows the payment as matched by the day's reconciliation.
    day = (await client.get(f"{API}/finance/external-columns/payments", headers=finance)).json()
    [mine] = [x for x in day["columns"] if x["column_id"] == c.col.id]
    assert [o["reconciliation"] for o in mine["orders"]] == ["matched"] and mine["unmatched_count"] == 0
    # The finance console's page names the column and shows the payment matched.
    page = await client.get(f"{API}/finance/external-columns/console", headers=finance)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
    section = page.text.split(f"<h2>{c.name}</h2>", 1)[1].split("</table>", 1)[0]
    assert started["out_trade_no"] in section and "10.00" in section and "3.00" in section
    assert "已对平" in section
    assert (await client.get(f"{API}/finance/external-columns/console", headers=resident)).status_code == 403


async def test_a_refund_the_provider_fails_is_told_once_and_its_amount_can_be_refunded_again(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    login: LoginFn,
    receiver: Receiver,
    pay_sandbox: dict[str, str],
) -> None:
    """WeChat Pay accepts a column's refund and then closes it without paying it out (REFUNDCLOSE):
    the column is told ``refund.failed`` once, the order is paid again with nothing refunded, and the
    same amount can be refunded under a new refund number."""
    from app_api.platform.openplatform import cashier_sweep
    from payments import registry

    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    resident = await login()
    body = _order(await _subject(client, resident, c.col), 800)
    order = (await _call(http, c, "POST", ORDERS, body)).json()
    r = await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": "wechat_v2"})
    assert r.status_code == 200, r.text
    started = r.json()
    await pay_at_provider(pay_sandbox, "wechat_v2", started["out_trade_no"], started["client_params"])

    async def paid_told() -> bool:
        return any(n["event"] == "order.paid" for n in receiver.for_order(order["id"], acked=True))

    await wait_until(paid_told, timeout=30)

    sandbox = registry._sandboxes.wechat_v2  # type: ignore[union-attr]
    sandbox.auto_settle_refunds = False  # the provider takes the refund and settles it later
    try:
        refund = {"out_refund_no": "R" + secrets.token_hex(6), "amount_fen": 800, "reason": "重复缴费"}
        r = await _call(http, c, "POST", f"{ORDERS}/{order['id']}/refunds", refund)
        assert r.status_code == 201, r.text
        provider_url = pay_sandbox["wechat_v2"]

        async def at_provider() -> dict[str, dict[str, Any]]:
            """The order's refunds at the provider, by the platform's refund number."""
            async with httpx.AsyncClient(base_url=provider_url, timeout=30) as sb:
                got = (await sb.get(f"/_sandbox/orders/{started['out_trade_no']}")).json()
            return dict(got.get("refunds") or {})

        async def submitted() -> bool:
            return len(await at_provider()) == 1

        await wait_until(submitted, timeout=30)
        # Nothing final yet: the sweep tells the column nothing about the refund.
        await cashier_sweep.notify_refunds()
        await asyncio.sleep(0.3)
        assert not [n for n in receiver.for_order(order["id"]) if n["event"].startswith("refund.")]
        # The provider closes it unpaid and notifies the platform.
        async with httpx.AsyncClient(base_url=provider_url, timeout=30) as sb:
            [platform_no] = await at_provider()
            settled = await sb.post(
                "/_sandbox/refunds/settle", json={"out_refund_no": platform_no, "status": "REFUNDCLOSE"}
            )
        assert settled.status_code == 200, settled.text
    finally:
        sandbox.auto_settle_refunds = True

    await _refunds_reach(http, c, order["id"], "failed")
    # The sweep (two at once here, besides the minute's schedule) records it once: the amount set
    # aside for the refund is given back, and the column is owed one notice.
    await asyncio.gather(cashier_sweep.notify_refunds(), cashier_sweep.notify_refunds())
    await cashier_sweep.notify_refunds()
    got = (await _call(http, c, "GET", f"{ORDERS}/{order['id']}")).json()
    assert got["status"] == "paid" and got["refunded_fen"] == 0

    async def failure_told() -> bool:
        return any(n["event"] == "refund.failed" for n in receiver.for_order(order["id"], acked=True))

    await wait_until(failure_told, timeout=30)
    await asyncio.sleep(0.5)
    [note] = [n for n in receiver.for_order(order["id"]) if n["event"] == "refund.failed"]
    assert note["out_refund_no"] == refund["out_refund_no"] and note["amount_fen"] == 800
    assert note["order_refunded_fen"] == 0 and receiver.forged == 0

    # The amount is refundable again, under a new number; this time the provider pays it out.
    again = {"out_refund_no": "R" + secrets.token_hex(6), "amount_fen": 800, "reason": "重复缴费"}
    r = await _call(http, c, "POST", f"{ORDERS}/{order['id']}/refunds", again)
    assert r.status_code == 201, r.text

    await _refunds_reach(http, c, order["id"], "failed", "succeeded")
    got = (await _call(http, c, "GET", f"{ORDERS}/{order['id']}")).json()
    assert got["refunded_fen"] == 800
    assert len(await at_provider()) == 2


async def test_a_column_down_is_retried_then_given_up_visibly_and_an_admin_resends(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    login: LoginFn,
    receiver: Receiver,
    pay_sandbox: dict[str, str],
) -> None:
    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    resident = await login()
    sub = await _subject(client, resident, c.col)
    order = (await _call(http, c, "POST", ORDERS, _order(sub, 500))).json()
    receiver.fail[c.col.client_id] = 10**6  # down for good
    started = (
        await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": "wechat_v2"})
    ).json()
    await pay_at_provider(pay_sandbox, "wechat_v2", started["out_trade_no"], started["client_params"])

    async def tried() -> bool:
        return len(receiver.for_order(order["id"])) >= 1

    await wait_until(tried, timeout=30)
    # Redis wiped while the column is down: the notice and its job are rows in the database, so the
    # retries go on (the relay resends what Redis lost).
    from app_api.core.redis import get_redis

    await (await get_redis()).flushdb()
    async with session_scope() as s:
        [notice] = (await s.exec(select(CashierNotice).where(CashierNotice.order_id == order["id"]))).all()
        # Spend the attempts of a column down for hours at once: the next attempt is the last.
        await s.exec(
            sa.update(CashierNotice)
            .where(col(CashierNotice.id) == notice.id)
            .values(attempts=cashier_notify.ATTEMPTS - 1)
        )

    async def given_up() -> bool:
        await outbox.relay()
        async with session_scope() as s:
            n = await s.get(CashierNotice, notice.id)
            return n is not None and n.status == "given_up"

    await wait_until(given_up, timeout=60)
    r = await client.get(
        f"{API}/admin/external-columns/{c.col.id}/cashier/notices",
        headers=admin,
        params={"status": "given_up"},
    )
    [shown] = r.json()["notices"]
    assert (
        shown["id"] == notice.id
        and shown["attempts"] == cashier_notify.ATTEMPTS
        and "503" in shown["last_error"]
    )
    assert len(await _audited("openplatform.cashier_notice_given_up", c.col.id)) == 1

    # The column is back; an admin sends it again and it is told once.
    receiver.fail[c.col.client_id] = 0
    r = await client.post(f"{API}/admin/cashier-notices/{notice.id}/retry", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text

    async def acknowledged() -> bool:
        return len(receiver.for_order(order["id"], acked=True)) == 1

    await wait_until(acknowledged, timeout=30)
    await asyncio.sleep(0.5)
    assert len(receiver.for_order(order["id"], acked=True)) == 1
    assert len(await _audited("openplatform.cashier_notice_retried", c.col.id)) == 1


async def _notice_jobs(notice_id: str) -> list[OutboxMessage]:
    async with sessionmaker()() as s:
        rows = await s.exec(select(OutboxMessage).where(OutboxMessage.task_name == cashier_notify.TASK))
        return [j for j in rows.all() if j.arguments.get("notice_id") == notice_id]


async def test_a_worker_killed_mid_delivery_and_redis_wiped_still_tell_the_column_once(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    login: LoginFn,
    receiver: Receiver,
    pay_sandbox: dict[str, str],
) -> None:
    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    resident = await login()
    sub = await _subject(client, resident, c.col)
    order = (await _call(http, c, "POST", ORDERS, _order(sub, 700))).json()
    receiver.fail[c.col.client_id] = 10**6
    started = (
        await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": "wechat_v3"})
    ).json()
    await pay_at_provider(pay_sandbox, "wechat_v3", started["out_trade_no"], started["client_params"])

    async def tried() -> bool:
        return len(receiver.for_order(order["id"])) >= 1

    await wait_until(tried, timeout=30)
    notice_id = receiver.for_order(order["id"])[0]["notice_id"]
    [job] = await _notice_jobs(notice_id)
    # The worker holding the job dies mid-post (its lease runs out, nobody renews it) and Redis is
    # emptied: only the database remembers the job.
    from app_api.core.redis import get_redis

    await (await get_redis()).flushdb()
    past = utcnow() - dt.timedelta(seconds=5)
    async with session_scope() as s:
        await s.exec(
            sa.update(OutboxMessage)
            .where(col(OutboxMessage.id) == job.id)
            .values(status=JobStatus.running, lease_until=past, due_at=past, started_at=past)
        )
    receiver.fail[c.col.client_id] = 0  # the column is back

    async def acknowledged() -> bool:
        await outbox.relay()
        return len(receiver.for_order(order["id"], acked=True)) >= 1

    await wait_until(acknowledged, timeout=60)

    async def done() -> bool:
        return [j.status for j in await _notice_jobs(notice_id)] == [JobStatus.done]

    await wait_until(done, timeout=30)
    # A second process running the same job, or the relay again: nothing more is sent.
    assert set(await asyncio.gather(*(runner.execute(job.id) for _ in range(3)))) == {"skipped"}
    assert await cashier_notify.deliver(notice_id) == "skipped"
    await outbox.relay()
    await asyncio.sleep(0.5)
    assert len(receiver.for_order(order["id"], acked=True)) == 1
    async with session_scope() as s:
        notice = await s.get(CashierNotice, notice_id)
        assert notice is not None and notice.status == "delivered"


async def test_an_order_paid_twice_is_told_once_and_the_second_payment_refunded(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    login: LoginFn,
    receiver: Receiver,
    pay_sandbox: dict[str, str],
) -> None:
    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    resident = await login()
    sub = await _subject(client, resident, c.col)
    order = (await _call(http, c, "POST", ORDERS, _order(sub, 1200))).json()
    # Two wallets opened before either paid (two phones): both pay.
    first = (
        await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": "wechat_v2"})
    ).json()
    second = (
        await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": "alipay"})
    ).json()
    await pay_at_provider(pay_sandbox, "wechat_v2", first["out_trade_no"], first["client_params"])

    async def told() -> bool:
        return len(receiver.for_order(order["id"], acked=True)) == 1

    await wait_until(told, timeout=30)
    await pay_at_provider(pay_sandbox, "alipay", second["out_trade_no"], second["client_params"])

    async def second_refunded() -> bool:
        async with httpx.AsyncClient(base_url=pay_sandbox["alipay"], timeout=30) as sb:
            got = (await sb.get(f"/_sandbox/orders/{second['out_trade_no']}")).json()
        return len(got.get("refunds") or []) == 1

    await wait_until(second_refunded, timeout=30)
    async with httpx.AsyncClient(base_url=pay_sandbox["wechat_v2"], timeout=30) as sb:
        kept = (await sb.get(f"/_sandbox/orders/{first['out_trade_no']}")).json()
    assert not kept.get("refunds")
    await asyncio.sleep(0.5)
    [note] = receiver.for_order(order["id"], acked=True)
    assert note["out_trade_no"] == first["out_trade_no"] and note["amount_fen"] == 1200
    got = (await _call(http, c, "GET", f"{ORDERS}/{order['id']}")).json()
    assert (
        got["status"] == "paid" and got["refunded_fen"] == 0 and got["out_trade_no"] == first["out_trade_no"]
    )


# --- bad input ----------------------------------------------------------------------------------------


async def test_forged_replayed_stale_and_foreign_requests_are_refused_and_audited(
    client: httpx.AsyncClient, http: httpx.AsyncClient, login: LoginFn, receiver: Receiver
) -> None:
    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    other = await _cashier(client, admin, receiver)
    resident = await login()
    sub = await _subject(client, resident, c.col)
    before = await _count(CashierOrder, column_id=c.col.id)

    def problem(r: httpx.Response, status: int, code: str) -> None:
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == code and r.json()["title"], r.text

    # Forged: signed with another key, or the body changed after signing.
    problem(
        await _call(http, c, "POST", ORDERS, _order(sub), secret=other.key),
        401,
        "openplatform.cashier_signature_invalid",
    )
    raw, headers = _signed(c, "POST", ORDERS, _order(sub, 1000))
    tampered = raw.replace(b'"amount_fen": 1000', b'"amount_fen": 1')
    problem(
        await http.post(ORDERS, content=tampered, headers=headers),
        401,
        "openplatform.cashier_signature_invalid",
    )
    # Stale: ten minutes old.
    problem(
        await _call(http, c, "POST", ORDERS, _order(sub), now=time.time() - 600),
        401,
        "openplatform.cashier_timestamp_stale",
    )
    # Replayed: the very same signed request twice; the second is refused, one order exists.
    raw, headers = _signed(c, "POST", ORDERS, _order(sub, 800))
    first = await http.post(ORDERS, content=raw, headers=headers)
    assert first.status_code == 201, first.text
    problem(await http.post(ORDERS, content=raw, headers=headers), 401, "openplatform.cashier_nonce_replayed")
    assert await _count(CashierOrder, column_id=c.col.id) == before + 1
    assert await _count(CashierNonce, column_id=c.col.id) >= 1
    # Unknown sub-account, a resident who never authorised the column: refused, nothing written.
    problem(
        await _call(http, c, "POST", ORDERS, _order(sub, sub_account="nope")),
        422,
        "openplatform.cashier_sub_account_unknown",
    )
    problem(
        await _call(http, c, "POST", ORDERS, _order("x" * 40)), 403, "openplatform.resident_not_authorised"
    )
    problem(await _call(http, c, "POST", ORDERS, {"amount_fen": -5}), 422, "app.validation_failed")
    assert await _count(CashierOrder, column_id=c.col.id) == before + 1

    # Another column's order is "not found", for reading and for refunding alike.
    oid = first.json()["id"]
    problem(await _call(http, other, "GET", f"{ORDERS}/{oid}"), 404, "openplatform.cashier_order_not_found")
    problem(
        await _call(
            http, other, "POST", f"{ORDERS}/{oid}/refunds", {"out_refund_no": "R123456", "amount_fen": 1}
        ),
        404,
        "openplatform.cashier_order_not_found",
    )
    problem(await _call(http, c, "GET", f"{ORDERS}/nonexistent"), 404, "openplatform.cashier_order_not_found")
    # Unpaid: nothing to refund.
    problem(
        await _call(
            http, c, "POST", f"{ORDERS}/{oid}/refunds", {"out_refund_no": "R123456", "amount_fen": 1}
        ),
        409,
        "openplatform.cashier_order_not_paid",
    )
    # Another resident cannot see or pay it.
    stranger = await login()
    r = await client.get(f"{API}/cashier/orders/{oid}", headers=stranger)
    assert r.status_code == 404 and r.json()["code"] == "openplatform.cashier_order_not_found"

    reasons = {e.data["reason"] for e in await _audited("openplatform.cashier_refused", c.col.id)}
    assert {
        "bad_signature",
        "stale_timestamp",
        "nonce_replayed",
        "sub_account_unknown",
        "not_authorised",
    } <= reasons
    assert "order_not_found" in {
        e.data["reason"] for e in await _audited("openplatform.cashier_refused", other.col.id)
    }


async def test_a_disabled_column_is_refused_at_its_next_call(
    client: httpx.AsyncClient, http: httpx.AsyncClient, login: LoginFn, receiver: Receiver
) -> None:
    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    resident = await login()
    sub = await _subject(client, resident, c.col)
    r = await _call(http, c, "POST", ORDERS, _order(sub))
    assert r.status_code == 201, r.text
    order = r.json()

    r = await client.post(f"{API}/admin/external-columns/{c.col.id}/disable", headers=admin)
    assert r.status_code == 200, r.text
    for resp in (
        await _call(http, c, "POST", ORDERS, _order(sub)),
        await _call(http, c, "GET", f"{ORDERS}/{order['id']}"),
    ):
        assert resp.status_code == 403 and resp.json()["code"] == "openplatform.column_disabled", resp.text
        assert resp.json()["title"] == "该第三方栏目已停用"
    # The resident cannot pay it either.
    r = await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": "wechat_v2"})
    assert r.status_code == 403 and r.json()["code"] == "openplatform.column_disabled", r.text
    assert "column_disabled" in {
        e.data["reason"] for e in await _audited("openplatform.cashier_refused", c.col.id)
    }
    assert await _count(CashierOrder, column_id=c.col.id) == 1


async def test_the_retries_outlast_a_column_down_for_an_hour_and_old_nonces_are_purged() -> None:
    from app_api.core.jobs.settings import get_jobs_settings
    from app_api.platform.openplatform import cashier

    s = get_jobs_settings()
    waits = [
        runner.backoff_s(n, base=s.retry_base_s, cap=s.retry_cap_s, rand=lambda: 0.0)
        for n in range(1, cashier_notify.ATTEMPTS)
    ]
    # Even with the shortest jitter, the last attempt comes more than an hour after the first.
    assert sum(waits) > 3600 and max(waits) <= s.retry_cap_s
    # The job runtime never gives up before the notice does (the notice's give-up is the visible one).
    assert runner.max_attempts(cashier_notify.TASK) > cashier_notify.ATTEMPTS

    old, fresh = "old" + secrets.token_hex(10), "new" + secrets.token_hex(10)
    async with session_scope() as session:
        session.add(CashierNonce(column_id="c1", nonce=old, seen_at=utcnow() - dt.timedelta(days=2)))
        session.add(CashierNonce(column_id="c1", nonce=fresh))
    async with session_scope() as session:
        assert await cashier.purge_nonces(session) >= 1
    async with session_scope() as session:
        assert await session.get(CashierNonce, ("c1", old)) is None
        assert await session.get(CashierNonce, ("c1", fresh)) is not None


@pytest.mark.parametrize("environment", ["production", "staging"])
async def test_outside_development_payment_notices_go_to_https_only(
    client: httpx.AsyncClient, login: LoginFn, monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    from app_api.core.settings import get_settings
    from app_api.platform.openplatform.cashier_models import CashierAccount

    admin = await login(roles=["admin"])
    col = await register(client, admin)
    monkeypatch.setattr(get_settings(), "environment", environment)
    url = f"{API}/admin/external-columns/{col.id}/cashier"
    r = await client.put(
        url, headers=admin, json={"notify_url": "http://fines.example.cn/n", "sub_accounts": ["f1"]}
    )
    assert r.status_code == 422 and r.json()["title"] and "https" in r.json()["detail"], r.text
    async with sessionmaker()() as s:
        assert await s.get(CashierAccount, col.id) is None  # nothing half-written
    r = await client.put(
        url, headers=admin, json={"notify_url": "https://fines.example.cn/n", "sub_accounts": ["f1"]}
    )
    assert r.status_code == 200 and r.json()["cashier_secret"], r.text
