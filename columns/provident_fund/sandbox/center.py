"""A loopback provident-fund center: people with accounts, monthly contributions, housing loans,
the center's published loan rule, and withdrawal applications (idempotent on ``app_ref``).
Requests are checked as :mod:`app_api.core.signing` says. Faults for tests: ``fail_next(n)`` answers
503 to the next n calls."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app_api.core.signing import verify_request

# An example rule made for the sandbox: its id, title, multiple, caps and ratios are not taken from
# a rule any center published (the rates follow the national provident-fund loan rates from
# 2025-05-08). The sandbox center answers with it; a deployment's center answers with its own.
PUBLISHED_RULE: dict[str, Any] = {
    "rule_id": "BZGJJ-DK-2025-01",
    "title": "亳州市住房公积金个人住房贷款实施细则（2025年5月调整）",
    "published_on": "2025-05-08",
    "balance_multiple": 15,
    "max_single_fen": 50_000_000,
    "max_couple_fen": 60_000_000,
    "loan_to_price_first": "0.80",
    "loan_to_price_second": "0.70",
    "income_ratio": "0.50",
    "max_term_years": 30,
    "min_contribution_months": 6,
    # annual rates in percent
    "rate_first_upto5": "2.10",
    "rate_first_over5": "2.60",
    "rate_second_upto5": "2.525",
    "rate_second_over5": "3.075",
}


@dataclass
class Person:
    id_number: str
    name: str
    account_no: str
    employer: str
    base_fen: int  # contribution base (monthly wage)
    balance_fen: int
    status: str = "正常缴存"
    employer_rate: str = "0.12"
    personal_rate: str = "0.12"
    opened_on: str = "2018-07-01"
    months: int = 36  # months contributed so far
    loans: list[dict[str, Any]] = field(default_factory=list)

    @property
    def monthly_fen(self) -> int:
        from decimal import Decimal

        return int(Decimal(self.base_fen) * (Decimal(self.employer_rate) + Decimal(self.personal_rate)))


class FundCenterSandbox:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.people: dict[str, Person] = {}
        self.withdrawals: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self._fail: list[str | None] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/person/query", self._person, methods=["POST"]),
                Route("/v1/person/contributions", self._contributions, methods=["POST"]),
                Route("/v1/person/loans", self._loans, methods=["POST"]),
                Route("/v1/rules/loan", self._rule, methods=["POST"]),
                Route("/v1/withdrawals", self._withdraw, methods=["POST"]),
            ]
        )

    def add_person(self, person: Person) -> Person:
        self.people[person.id_number] = person
        return person

    def fail_next(self, n: int, path: str | None = None) -> None:
        """The next ``n`` calls (to ``path`` only, if given) answer 503."""
        with self._lock:
            self._fail.extend([path] * n)

    @staticmethod
    def _answer(code: int, msg: str, data: Any = None, status: int = 200) -> JSONResponse:
        return JSONResponse({"code": code, "msg": msg, "data": data}, status_code=status)

    async def _read(self, request: Request, path: str) -> dict[str, Any] | Response:
        """The signed JSON payload of a call to the protocol path ``path``, or the refusal."""
        body = await request.body()
        problem = verify_request(request.headers, secret=self.secret, method="POST", path=path, body=body)
        if problem == "stale_timestamp":
            return self._answer(40101, "时间戳已过期", status=401)
        if problem == "bad_signature":
            return self._answer(40102, "签名错误", status=401)
        with self._lock:
            self.calls += 1
            for i, failing in enumerate(self._fail):
                if failing is None or failing == path:
                    del self._fail[i]
                    return self._answer(50001, "系统繁忙", status=503)
        try:
            return dict(json.loads(body))
        except (ValueError, TypeError):
            return self._answer(40001, "请求格式错误", status=400)

    def _by_account(self, account_no: str) -> Person | None:
        return next((p for p in self.people.values() if p.account_no == account_no), None)

    async def _person(self, request: Request) -> Response:
        p = await self._read(request, "/v1/person/query")
        if isinstance(p, Response):
            return p
        person = self.people.get(str(p.get("id_number", "")))
        if person is None:
            return self._answer(40401, "公积金账户不存在")
        return self._answer(
            0,
            "ok",
            {
                "account_no": person.account_no,
                "name": person.name,
                "status": person.status,
                "employer": person.employer,
                "balance_fen": person.balance_fen,
                "monthly_fen": person.monthly_fen,
                "base_fen": person.base_fen,
                "employer_rate": person.employer_rate,
                "personal_rate": person.personal_rate,
                "opened_on": person.opened_on,
                "months_contributed": person.months,
            },
        )

    async def _contributions(self, request: Request) -> Response:
        p = await self._read(request, "/v1/person/contributions")
        if isinstance(p, Response):
            return p
        person = self._by_account(str(p.get("account_no", "")))
        if person is None:
            return self._answer(40401, "公积金账户不存在")
        n = max(0, min(int(p.get("months", 12)), person.months))
        today = dt.date.today().replace(day=1)
        items = []
        from decimal import Decimal

        for i in range(n):
            month = today.year * 12 + today.month - 1 - i - 1
            y, m = divmod(month, 12)
            emp = int(Decimal(person.base_fen) * Decimal(person.employer_rate))
            own = int(Decimal(person.base_fen) * Decimal(person.personal_rate))
            items.append(
                {
                    "month": f"{y}-{m + 1:02d}",
                    "employer_fen": emp,
                    "personal_fen": own,
                    "employer": person.employer,
                }
            )
        return self._answer(0, "ok", {"items": items})

    async def _loans(self, request: Request) -> Response:
        p = await self._read(request, "/v1/person/loans")
        if isinstance(p, Response):
            return p
        person = self._by_account(str(p.get("account_no", "")))
        if person is None:
            return self._answer(40401, "公积金账户不存在")
        return self._answer(0, "ok", {"items": person.loans})

    async def _rule(self, request: Request) -> Response:
        p = await self._read(request, "/v1/rules/loan")
        if isinstance(p, Response):
            return p
        return self._answer(0, "ok", PUBLISHED_RULE)

    async def _withdraw(self, request: Request) -> Response:
        p = await self._read(request, "/v1/withdrawals")
        if isinstance(p, Response):
            return p
        ref = str(p.get("app_ref", ""))
        with self._lock:
            if ref in self.withdrawals:
                return self._answer(0, "ok", {**self.withdrawals[ref], "duplicate": True})
            person = self._by_account(str(p.get("account_no", "")))
            if person is None:
                return self._answer(40401, "公积金账户不存在")
            amount = int(p.get("amount_fen", 0))
            if amount <= 0 or amount > person.balance_fen:
                return self._answer(42201, "提取金额超过账户可提取余额")
            if person.status != "正常缴存" and p.get("reason") not in ("退休", "离职"):
                return self._answer(42201, "账户已封存，该提取事由不予受理")
            record = {
                "application_no": f"TQ{dt.date.today():%Y%m%d}{next(self._seq):05d}",
                "status": "已受理",
                "amount_fen": amount,
                "reason": p.get("reason"),
            }
            self.withdrawals[ref] = record
            return self._answer(0, "ok", {**record, "duplicate": False})
