"""Load through the HTTP API only, and a record of every request and every acknowledged write.

Each actor plays residents one after another: log in with the SMS code from the sandbox inbox, bind
a water account (the biller sandbox holds it with three bills), pay a bill in its own order (the
utilities column opens the order; the provider sandbox plays the payer and sends the payment
notification to the api), submit a one-tap application (gov_services), pay a second bill, and log
out. A step that fails (an outage) is tried again until it succeeds or the load stops; every attempt is recorded
with its timing and answer, every 2xx of a write is remembered as acknowledged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.faults.harness import Cluster

UTIL = "/api/v1/columns/utilities"
GOV = "/api/v1/columns/gov_services"
# 居民身份证换领 (identity level 1, two materials, collected at the window, a 20 元 fee paid at
# submission: the application waits for it, then the fee's paid hook submits it).
ITEM = "BZ-GA-003"
ITEM_MATERIALS = ("原居民身份证", "居民户口簿")
ITEM_DELIVERY = "窗口领取"


@dataclass
class Call:
    label: str
    started: float  # monotonic
    ended: float
    status: int | None  # None: no HTTP answer
    error: str | None = None  # the transport error, if any
    code: str | None = None  # problem+json code
    content_type: str = ""
    request_id: str = ""  # to find the request in the api log
    # A retry's answer that is right because an earlier try did the work (a logout answered 503
    # that had logged out: 401 on the retry). Not an outage answer to judge.
    retry_found_done: bool = False

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Acked:
    """Writes the api (or, for notifications, the merchant) acknowledged."""

    accounts: dict[str, str] = field(default_factory=dict)  # account id -> phone
    bindings: dict[str, str] = field(default_factory=dict)  # binding id -> account id
    payments: dict[str, str] = field(default_factory=dict)  # utilities payment id -> out_trade_no
    notified: set[str] = field(default_factory=set)  # out_trade_no whose notification got SUCCESS
    bills: dict[str, str] = field(default_factory=dict)  # out_trade_no -> biller bill_no
    applications: set[str] = field(default_factory=set)
    fees: dict[str, str] = field(default_factory=dict)  # fee order's out_trade_no -> application id
    submitted: set[str] = field(default_factory=set)
    logged_out: list[str] = field(default_factory=list)  # access tokens whose logout answered 204


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 50), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


JPEG = _jpeg()


class Stop(Exception):
    pass


class Load:
    def __init__(self, cluster: Cluster, actors: int = 6, pause_s: float = 0.0) -> None:
        self.cluster = cluster
        self.actors = actors
        self.pause_s = pause_s
        self.calls: list[Call] = []
        self.acked = Acked()
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.residents_done = 0
        self.cooldowns_left = 0  # a code request refused 429 although no code was sent to that phone
        self.answers_lost_then_conflict = 0  # a retried write found done (409) after its answer was lost
        self.logouts_done_unacknowledged = 0  # a logout answered 503 had logged out (401 on the retry)
        self.codes_missing = 0  # a code request answered 202 whose SMS is not in the inbox
        self.logins_refused: Counter[str] = Counter()  # a login with the code just received, refused
        self.errors: list[str] = []  # unexpected answers (a 4xx that is not an outage, a bad body)

    # -- one request -----------------------------------------------------------------------------

    async def call(
        self, c: httpx.AsyncClient, method: str, url: str, label: str, **kw: Any
    ) -> httpx.Response | None:
        t0 = time.monotonic()
        try:
            r = await c.request(method, url, **kw)
        except httpx.TransportError as e:
            self.calls.append(Call(label, t0, time.monotonic(), None, f"{type(e).__name__}: {e}"))
            return None
        t1 = time.monotonic()
        code = None
        ctype = r.headers.get("content-type", "")
        if r.status_code >= 400 and ctype.startswith("application/problem+json"):
            try:
                code = r.json().get("code")
            except ValueError:
                code = None
        self.calls.append(
            Call(label, t0, t1, r.status_code, None, code, ctype, r.headers.get("x-request-id", ""))
        )
        return r

    async def until_ok(
        self,
        c: httpx.AsyncClient,
        method: str,
        url: str,
        label: str,
        ok: tuple[int, ...],
        trail: list[str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        """Try a step until it is answered with one of ``ok``; outages (503, no answer) are retried,
        other answers are unexpected and end this resident. ``trail`` collects each try's answer."""
        while True:
            if self.stopping:
                raise Stop()
            r = await self.call(c, method, url, label, **kw)
            if trail is not None:
                last = self.calls[-1]
                trail.append(f"{last.status or last.error}{' ' + last.code if last.code else ''}")
            if r is not None and r.status_code in ok:
                return r
            if r is not None and r.status_code not in (502, 503, 504) and r.status_code < 500:
                self.errors.append(f"{label}: {r.status_code} {r.text[:300]}")
                raise Stop()
            await asyncio.sleep(0.3)

    # -- one resident ----------------------------------------------------------------------------

    async def login(self, c: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
        """A new resident through the SMS flow. The code and the inbox live in Redis: a wipe between
        sending and logging in loses them, and the login is started again with a new phone (so is
        one refused with 429: a failed attempt left its cooldown behind; counted)."""
        while True:
            phone = "137" + f"{secrets.randbelow(10**8):08d}"
            r = await self.until_ok(
                c, "POST", "/api/v1/auth/sms-codes", "sms-code", (202, 429), json={"phone": phone}
            )
            if r.status_code == 429:
                self.cooldowns_left += 1
                await asyncio.sleep(0.3)
                continue
            r = await self.until_ok(c, "GET", "/api/v1/dev/sms", "sms-inbox", (200,), params={"phone": phone})
            codes = [
                m.group(1) for x in r.json()["messages"] if (m := re.search(r"验证码为(\d{6})", x["text"]))
            ]
            if not codes:
                self.codes_missing += 1
                await asyncio.sleep(0.3)
                continue
            trail: list[str] = []
            r = await self.until_ok(
                c,
                "POST",
                "/api/v1/auth/login",
                "login",
                (200, 400, 401, 422),
                trail=trail,
                json={"phone": phone, "code": codes[0]},
            )
            if r.status_code != 200:
                # what the earlier tries of this login were answered tells why (e.g. a 503 whose
                # unit of work did not give the code back)
                self.logins_refused[" -> ".join(trail)] += 1
                await asyncio.sleep(0.3)
                continue
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            me = await self.until_ok(c, "GET", "/api/v1/me", "me", (200,), headers=headers)
            self.acked.accounts[me.json()["id"]] = phone
            return phone, headers

    async def resident(self, c: httpx.AsyncClient) -> None:
        phone, headers = await self.login(c)

        account_no = "W" + f"{secrets.randbelow(10**10):010d}"
        holder = "测试" + secrets.choice("明华强丽芳军")
        due = (dt.date.today() + dt.timedelta(days=10)).isoformat()
        bills = [
            {
                "bill_no": f"{account_no}-26{m:02d}",
                "period": f"2026-{m:02d}",
                "amount_fen": 1000 + m,
                "due_date": due,
            }
            for m in (9, 10, 11)
        ]
        await self.cluster.sandbox(
            "POST",
            "/billers/water/_sandbox/accounts",
            json={"account_no": account_no, "holder_name": holder, "address": "谯城区", "bills": bills},
        )
        r = await self.until_ok(
            c,
            "POST",
            f"{UTIL}/bindings",
            "bind",
            (201, 409),
            headers=headers,
            json={"biller_code": "water", "account_no": account_no, "holder_name": holder},
        )
        if r.status_code == 409:
            # An earlier try was committed but its answer lost (an api process killed): the client
            # reads its bindings to go on, as an app would.
            if r.json().get("code") != "utilities.already_bound":
                self.errors.append(f"bind: 409 {r.text[:300]}")
                raise Stop()
            self.answers_lost_then_conflict += 1
            r = await self.until_ok(c, "GET", f"{UTIL}/bindings", "bindings", (200,), headers=headers)
            binding_id = next(b["id"] for b in r.json() if b["account_no"] == account_no)
        else:
            binding_id = r.json()["id"]
        self.acked.bindings[binding_id] = phone

        steps: list[Callable[[], Awaitable[None]]] = [
            lambda: self.pay_one(c, headers),
            lambda: self.apply(c, headers),
            lambda: self.pay_one(c, headers),
        ]
        for step in steps:
            await step()
            if self.pause_s:
                await asyncio.sleep(self.pause_s)
        token = headers["Authorization"].split(" ", 1)[1]
        tries = len(self.calls)
        r = await self.until_ok(c, "POST", "/api/v1/auth/logout", "logout", (204, 401), headers=headers)
        if r.status_code == 401:
            # Refused as logged out: only right if an earlier try (answered 503 or not at all) had
            # logged out after all. Counted; the token must stay refused like any other.
            if not any(x.label == "logout" for x in self.calls[tries:-1]):
                self.errors.append(f"logout: 401 on the first try {r.text[:200]}")
                raise Stop()
            self.logouts_done_unacknowledged += 1
            rid = r.headers.get("x-request-id", "")
            for x in reversed(self.calls):
                if x.label == "logout" and x.request_id == rid:
                    x.retry_found_done = True
                    break
        self.acked.logged_out.append(token)
        self.residents_done += 1

    async def pay_one(self, c: httpx.AsyncClient, headers: dict[str, str]) -> None:
        r = await self.until_ok(c, "GET", f"{UTIL}/bills", "bills", (200,), headers=headers)
        outstanding = [b for a in r.json()["accounts"] for b in a["bills"]]
        if not outstanding:
            self.errors.append(f"no outstanding bill left: {r.text[:300]}")
            raise Stop()
        bill = outstanding[0]
        r = await self.until_ok(
            c,
            "POST",
            f"{UTIL}/payments",
            "pay",
            (201,),
            headers=headers,
            json={"bill_ids": [bill["id"]], "provider": "wechat_v2", "channel": "app"},
        )
        started = r.json()
        out_trade_no = started["out_trade_no"]
        self.acked.payments[started["payment_id"]] = out_trade_no
        self.acked.bills[out_trade_no] = bill["bill_no"]
        # The resident pays in the wallet; the provider notifies the api (and resends until acknowledged).
        t0 = time.monotonic()
        res = await self.cluster.sandbox(
            "POST", "/wechat_v2/_sandbox/pay", json={"out_trade_no": out_trade_no}
        )
        t1 = time.monotonic()
        for d in res["deliveries"]:
            status = d["status_code"]
            self.calls.append(Call("notify", t0, t1, status, None if status else d["response"][:200]))
            if status == 200 and "<return_code><![CDATA[SUCCESS]]>" in d["response"]:
                self.acked.notified.add(out_trade_no)
        # The resident waits for the payment to show as paid before paying the next bill (the bills
        # listing would offer this bill again until the column has been told).
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not self.stopping:
            got = await self.call(
                c, "GET", f"{UTIL}/payments/{started['payment_id']}", "receipt", headers=headers
            )
            if got is not None and got.status_code == 200 and got.json()["status"] == "paid":
                return
            await asyncio.sleep(0.5)

    async def apply(self, c: httpx.AsyncClient, headers: dict[str, str]) -> None:
        r = await self.until_ok(
            c,
            "POST",
            f"{GOV}/applications",
            "apply",
            (200, 201),
            headers=headers,
            json={"item_code": ITEM, "client_key": uuid.uuid4().hex},
        )
        app_id = r.json()["id"]
        self.acked.applications.add(app_id)
        for material in ITEM_MATERIALS:
            await self.until_ok(
                c,
                "POST",
                f"{GOV}/applications/{app_id}/uploads",
                "upload",
                (201,),
                headers=headers,
                data={"material": material},
                files={"file": ("scan.jpg", JPEG, "image/jpeg")},
            )
        r = await self.until_ok(
            c,
            "POST",
            f"{GOV}/applications/{app_id}/submit",
            "submit",
            (200,),
            headers=headers,
            json={"delivery": ITEM_DELIVERY},
        )
        status = r.json()["status"]
        if status == "awaiting_payment":
            status = await self.pay_fee(c, headers, app_id)
        if status == "submitted":
            self.acked.submitted.add(app_id)

    async def pay_fee(self, c: httpx.AsyncClient, headers: dict[str, str], app_id: str) -> str:
        """Pay the application's fee; the application's status once the column was told (or as it
        stood when the resident gave up waiting)."""
        r = await self.until_ok(
            c,
            "POST",
            f"{GOV}/applications/{app_id}/fee/pay",
            "fee-pay",
            (201,),
            headers=headers,
            json={"provider": "wechat_v2", "channel": "app"},
        )
        out_trade_no = r.json()["out_trade_no"]
        self.acked.fees[out_trade_no] = app_id
        t0 = time.monotonic()
        res = await self.cluster.sandbox(
            "POST", "/wechat_v2/_sandbox/pay", json={"out_trade_no": out_trade_no}
        )
        t1 = time.monotonic()
        for d in res["deliveries"]:
            status = d["status_code"]
            self.calls.append(Call("notify", t0, t1, status, None if status else d["response"][:200]))
            if status == 200 and "<return_code><![CDATA[SUCCESS]]>" in d["response"]:
                self.acked.notified.add(out_trade_no)
        deadline = time.monotonic() + 90
        state = "awaiting_payment"
        while time.monotonic() < deadline and not self.stopping:
            got = await self.call(c, "GET", f"{GOV}/applications/{app_id}", "application", headers=headers)
            if got is not None and got.status_code == 200:
                state = got.json()["status"]
                if state != "awaiting_payment":
                    break
            await asyncio.sleep(0.5)
        return state

    # -- running ---------------------------------------------------------------------------------

    async def _actor(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=4, max_connections=8)
        async with httpx.AsyncClient(base_url=self.cluster.api_url, timeout=15, limits=limits) as c:
            while not self.stopping:
                try:
                    await self.resident(c)
                except Stop:
                    return
                except Exception as e:  # a harness bug must show, not hang the run
                    self.errors.append(f"actor: {type(e).__name__}: {e}")
                    await asyncio.sleep(0.5)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._actor()) for _ in range(self.actors)]

    async def stop(self, grace_s: float = 60.0) -> None:
        """Let residents finish what they started (no new ones), then stop them."""
        self.stopping = True
        done, pending = await asyncio.wait(self._tasks, timeout=grace_s)
        for t in pending:
            t.cancel()
        for t in done:
            if t.exception() is not None:
                self.errors.append(f"actor crashed: {t.exception()!r}")
