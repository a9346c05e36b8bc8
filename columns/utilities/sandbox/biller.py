"""A loopback biller speaking the ``http_json`` protocol, for development, tests and benchmarks.

Each :class:`BillerSandbox` is one company (water, power or gas) with its own accounts, bills and
shared secret. It is the reference implementation of this project's proposed biller protocol
(``docs/adapters/utilities.yaml``), not of any real biller's: it verifies signatures and timestamps
as that protocol requires, checks holder names, records payments once per ``payment_ref`` (a
repeated post answers ``duplicate: true`` with the same receipt), and can be told to misbehave for
the next N calls: answer 503, answer garbage, or time out — for a payment, after recording it, which
is the case that tests exactly-once delivery.

Control endpoints under ``/_sandbox`` (never in production): add accounts and bills, set faults,
read what was posted. Requests are checked as :mod:`app_api.core.signing` says (the signing of
every house protocol, a proposal of this project).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from app_api.core.crypto import mask_name
from app_api.core.signing import verify_request

Fault = Literal["error", "garbage", "timeout"]


@dataclass
class SandboxBill:
    bill_no: str
    period: str
    amount_fen: int
    due_date: dt.date
    usage: str = ""
    paid_ref: str | None = None


@dataclass
class SandboxAccount:
    account_no: str
    holder_name: str
    address: str
    bills: list[SandboxBill] = field(default_factory=list)


@dataclass
class PostedPayment:
    payment_ref: str
    account_no: str
    bill_no: str
    amount_fen: int
    receipt_no: str
    paid_at: str
    channel: str
    times_posted: int = 1


class BillerSandbox:
    def __init__(
        self,
        code: str,
        secret: str,
        *,
        unit: str = "吨",
        timeout_sleep_s: float = 10.0,
        latency_s: float = 0.0,
    ) -> None:
        self.code = code
        self.latency_s = latency_s  # added to every answer: a remote biller is not on loopback
        self.secret = secret
        self.unit = unit
        self.timeout_sleep_s = timeout_sleep_s
        self.accounts: dict[str, SandboxAccount] = {}
        self.payments: dict[str, PostedPayment] = {}
        self.calls: list[tuple[str, str]] = []  # (path, outcome)
        self._faults: list[tuple[Fault, str | None]] = []
        self._lock = threading.Lock()
        self._receipts = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/accounts/verify", self._verify, methods=["POST"]),
                Route("/v1/bills/query", self._bills, methods=["POST"]),
                Route("/v1/payments", self._pay, methods=["POST"]),
                Route("/_sandbox/accounts", self._control_account, methods=["POST"]),
                Route("/_sandbox/faults", self._control_faults, methods=["POST"]),
                Route("/_sandbox/payments", self._control_payments, methods=["GET"]),
                Route("/_sandbox/latency", self._control_latency, methods=["POST"]),
            ]
        )

    # -- set-up (Python API; the control endpoints call the same) ----------------------------------

    def add_account(
        self, account_no: str, holder_name: str, address: str = "", bills: list[SandboxBill] | None = None
    ) -> SandboxAccount:
        with self._lock:
            acct = SandboxAccount(account_no, holder_name, address, list(bills or []))
            self.accounts[account_no] = acct
            return acct

    def add_bill(self, account_no: str, bill: SandboxBill) -> None:
        with self._lock:
            self.accounts[account_no].bills.append(bill)

    def fail_next(self, count: int, fault: Fault = "error", path: str | None = None) -> None:
        """The next ``count`` calls (to ``path`` only, if given) misbehave in the chosen way."""
        with self._lock:
            self._faults.extend([(fault, path)] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def payments_for(self, bill_no: str) -> list[PostedPayment]:
        return [p for p in self.payments.values() if p.bill_no == bill_no]

    # -- protocol ------------------------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, (fault, p) in enumerate(self._faults):
                if p is None or p == path:
                    del self._faults[i]
                    return fault
        return None

    @staticmethod
    def _answer(code: int, msg: str, data: Any = None, status: int = 200) -> JSONResponse:
        return JSONResponse({"code": code, "msg": msg, "data": data}, status_code=status)

    async def _read(self, request: Request, path: str) -> dict[str, Any] | Response:
        """The signed JSON payload of a call to the protocol path ``path``, or the refusal."""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        body = await request.body()
        problem = verify_request(request.headers, secret=self.secret, method="POST", path=path, body=body)
        if problem == "stale_timestamp":
            return self._answer(40101, "时间戳已过期", status=401)
        if problem == "bad_signature":
            return self._answer(40102, "签名错误", status=401)
        try:
            payload = json.loads(body)
        except ValueError:
            return self._answer(40001, "请求格式错误", status=400)
        if not isinstance(payload, dict):
            return self._answer(40001, "请求格式错误", status=400)
        return payload

    async def _faulty(self, path: str) -> Response | None:
        fault = self._take_fault(path)
        if fault is None:
            return None
        return await self._fault_response(fault, path)

    async def _fault_response(self, fault: Fault, path: str) -> Response:
        self.calls.append((path, fault))
        if fault == "error":
            return self._answer(50001, "系统繁忙", status=503)
        if fault == "garbage":
            return PlainTextResponse("<html><body>502 Bad Gateway</body></html>", status_code=200)
        await asyncio.sleep(self.timeout_sleep_s)
        return self._answer(50002, "处理超时")

    async def _verify(self, request: Request) -> Response:
        p = await self._read(request, "/v1/accounts/verify")
        if isinstance(p, Response):
            return p
        if (f := await self._faulty("/v1/accounts/verify")) is not None:
            return f
        acct = self.accounts.get(str(p.get("account_no", "")))
        if acct is None:
            return self._answer(40401, "户号不存在")
        if str(p.get("holder_name", "")).strip() != acct.holder_name:
            return self._answer(40901, "户名与户号不符")
        self.calls.append(("/v1/accounts/verify", "ok"))
        address = acct.address[:6] + "****" if acct.address else ""
        return self._answer(
            0,
            "ok",
            {
                "account_no": acct.account_no,
                "holder_masked": mask_name(acct.holder_name),
                "address_masked": address,
            },
        )

    async def _bills(self, request: Request) -> Response:
        p = await self._read(request, "/v1/bills/query")
        if isinstance(p, Response):
            return p
        if (f := await self._faulty("/v1/bills/query")) is not None:
            return f
        acct = self.accounts.get(str(p.get("account_no", "")))
        if acct is None:
            return self._answer(40401, "户号不存在")
        self.calls.append(("/v1/bills/query", "ok"))
        return self._answer(
            0,
            "ok",
            {
                "bills": [
                    {
                        "bill_no": b.bill_no,
                        "period": b.period,
                        "amount_fen": b.amount_fen,
                        "due_date": b.due_date.isoformat(),
                        "usage": b.usage,
                    }
                    for b in acct.bills
                    if b.paid_ref is None
                ]
            },
        )

    async def _pay(self, request: Request) -> Response:
        p = await self._read(request, "/v1/payments")
        if isinstance(p, Response):
            return p
        fault = self._take_fault("/v1/payments")
        if fault in ("error", "garbage"):
            return await self._fault_response(fault, "/v1/payments")
        ref = str(p.get("payment_ref", ""))
        with self._lock:
            existing = self.payments.get(ref)
            if existing is not None:
                existing.times_posted += 1
                answer = self._answer(0, "ok", {"receipt_no": existing.receipt_no, "duplicate": True})
            else:
                acct = self.accounts.get(str(p.get("account_no", "")))
                if acct is None:
                    return self._answer(40401, "户号不存在")
                bill = next((b for b in acct.bills if b.bill_no == p.get("bill_no")), None)
                if bill is None:
                    return self._answer(40402, "账单不存在")
                if bill.paid_ref is not None:
                    return self._answer(40903, "该账单已由其他缴费销账")
                if int(p.get("amount_fen", -1)) != bill.amount_fen:
                    return self._answer(42201, "缴费金额与账单金额不符")
                bill.paid_ref = ref
                receipt = f"{self.code.upper()}{dt.date.today():%Y%m%d}{next(self._receipts):06d}"
                self.payments[ref] = PostedPayment(
                    ref,
                    acct.account_no,
                    bill.bill_no,
                    bill.amount_fen,
                    receipt,
                    str(p.get("paid_at", "")),
                    str(p.get("channel", "")),
                )
                answer = self._answer(0, "ok", {"receipt_no": receipt, "duplicate": False})
        self.calls.append(("/v1/payments", "ok" if fault is None else fault))
        if fault == "timeout":
            # Recorded, but the answer is lost: the caller times out and will post again.
            await asyncio.sleep(self.timeout_sleep_s)
        return answer

    # -- control -------------------------------------------------------------------------------------

    async def _control_account(self, request: Request) -> Response:
        p = await request.json()
        bills = [
            SandboxBill(
                b["bill_no"],
                b["period"],
                int(b["amount_fen"]),
                dt.date.fromisoformat(b["due_date"]),
                b.get("usage", ""),
            )
            for b in p.get("bills", [])
        ]
        self.add_account(p["account_no"], p["holder_name"], p.get("address", ""), bills)
        return JSONResponse({"ok": True})

    async def _control_faults(self, request: Request) -> Response:
        p = await request.json()
        self.fail_next(int(p.get("count", 1)), p.get("fault", "error"), p.get("path"))
        return JSONResponse({"ok": True})

    async def _control_latency(self, request: Request) -> Response:
        self.latency_s = float((await request.json()).get("ms", 0)) / 1000
        return JSONResponse({"ok": True})

    async def _control_payments(self, request: Request) -> Response:
        return JSONResponse({"payments": [vars(x) for x in self.payments.values()]})


def sandbox_app(sandboxes: dict[str, BillerSandbox]) -> Starlette:
    """Several billers behind one server: ``/<code>/v1/...``."""
    return Starlette(routes=[Mount(f"/{code}", app=s.app) for code, s in sandboxes.items()])
