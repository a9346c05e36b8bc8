"""Shared parts of the provider sandboxes: keys, notification delivery, bill rows, a thread server.

The sandboxes are loopback stand-ins for WeChat Pay v2/v3 and Alipay. They speak each real
protocol (the real SDKs talk to them unchanged), keep their own records, and can deliver
notifications the awkward ways real gateways do: duplicated, late, held back and released out of
order, or forged (signed with a key that is not the provider's, or altered after signing).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app_api.core.clock import CHINA_TZ, china_now

log = logging.getLogger(__name__)

# signature: signed with a key that is not ours; amount: altered after signing; merchant: correctly
# signed but addressed to another app/merchant; stale: correctly signed, old timestamp (v3);
# amount_signed: correctly signed with an amount that differs from the order (the ledger must flag it).
Forgery = Literal["signature", "amount", "merchant", "stale", "amount_signed"]


def new_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pem_pkcs1_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def pem_pkcs8_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_public(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


_counter = itertools.count(1)


def provider_id(prefix: str, digits: int = 28) -> str:
    """A provider-style numeric transaction id, unique within the process."""
    stamp = china_now().strftime("%Y%m%d")
    serial = f"{next(_counter):08d}{secrets.randbelow(10**8):08d}"
    return (prefix + stamp + serial)[:digits].ljust(digits, "0")


@dataclass(slots=True)
class Delivery:
    """How a notification is delivered."""

    copies: int = 1  # >1: the same notification sent several times (concurrently)
    sequential: bool = False  # the copies one after another instead (exact replays)
    retries: int = 0  # resend the identical message after a failure answer, as providers do
    delay_s: float = 0.0  # late
    hold: bool = False  # keep it until release() (to deliver out of order)
    forge: Forgery | None = None


@dataclass(slots=True)
class OutgoingNotification:
    url: str
    body: bytes
    headers: dict[str, str]
    label: str  # e.g. "pay:ORDER1" or "refund:R1"
    delivery: Delivery = field(default_factory=Delivery)


@dataclass(slots=True)
class DeliveryRecord:
    label: str
    url: str
    status_code: int | None
    response: bytes
    at: float
    forged: str | None


class Notifier:
    """Sends notifications to merchants' notify URLs and remembers what they answered."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        accepted: Callable[[int, bytes], bool] | None = None,
    ) -> None:
        self._transport = transport
        # What the provider reads as "received" (status, body); anything else is retried on request.
        self._accepted = accepted or (lambda status, _body: 200 <= status < 300)
        self.held: list[OutgoingNotification] = []
        self.log: list[DeliveryRecord] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, note: OutgoingNotification) -> list[DeliveryRecord]:
        """Deliver now (waiting for the answers), later (delay), or hold it."""
        if note.delivery.hold:
            self.held.append(note)
            return []
        if note.delivery.delay_s > 0:
            task = asyncio.create_task(self._later(note))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return []
        return await self._send(note)

    async def _later(self, note: OutgoingNotification) -> None:
        await asyncio.sleep(note.delivery.delay_s)
        await self._send(note)

    async def release(self, order: Literal["fifo", "reverse"] = "fifo") -> list[DeliveryRecord]:
        held, self.held = self.held, []
        if order == "reverse":
            held.reverse()
        records: list[DeliveryRecord] = []
        for note in held:
            records.extend(await self._send(note))
        return records

    async def _send(self, note: OutgoingNotification) -> list[DeliveryRecord]:
        async with httpx.AsyncClient(transport=self._transport, timeout=30.0) as client:

            async def attempt() -> DeliveryRecord:
                try:
                    response = await client.post(note.url, content=note.body, headers=note.headers)
                    status, content = response.status_code, response.content
                except Exception as exc:
                    # Whatever went wrong, the notification was not delivered and the provider goes on
                    # (retries on request): not only httpx's errors. A connection torn down while it is
                    # being set up (a merchant server stopping) can surface from anyio as an
                    # AttributeError; that made this sandbox answer 500 to the one who paid.
                    log.warning("sandbox notification to %s failed: %r", note.url, exc)
                    status, content = None, (str(exc) or repr(exc)).encode()
                record = DeliveryRecord(
                    label=note.label,
                    url=note.url,
                    status_code=status,
                    response=content,
                    at=time.time(),
                    forged=note.delivery.forge,
                )
                self.log.append(record)
                return record

            async def one() -> list[DeliveryRecord]:
                records = [await attempt()]
                for _ in range(note.delivery.retries):
                    last = records[-1]
                    if last.status_code is not None and self._accepted(last.status_code, last.response):
                        break
                    records.append(await attempt())
                return records

            copies = range(max(1, note.delivery.copies))
            if note.delivery.sequential:
                return [r for _ in copies for r in await one()]
            return [r for records in await asyncio.gather(*(one() for _ in copies)) for r in records]

    def later(self, delay_s: float, factory: Callable[[], Awaitable[Any]]) -> None:
        """Run ``factory()`` after ``delay_s`` in the background (e.g. settle a refund after answering)."""

        async def run() -> None:
            await asyncio.sleep(delay_s)
            await factory()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def parse_delivery(payload: dict[str, Any]) -> Delivery:
    forge = payload.get("forge")
    if forge not in (None, "signature", "amount", "merchant", "stale", "amount_signed"):
        raise ValueError(f"unknown forgery {forge!r}")
    return Delivery(
        copies=int(payload.get("copies", 1)),
        sequential=bool(payload.get("sequential", False)),
        retries=int(payload.get("retries", 0)),
        delay_s=float(payload.get("delay_s", 0.0)),
        hold=bool(payload.get("hold", False)),
        forge=forge,
    )


@dataclass(slots=True)
class BillRow:
    """One line of a provider bill, provider-neutral; each sandbox renders it in its own format."""

    traded_at: dt.datetime
    app_id: str
    mch_id: str
    transaction_id: str
    out_trade_no: str
    payer: str
    trade_type: str  # JSAPI / APP
    status: Literal["SUCCESS", "REFUND"]
    amount_fen: int  # order amount
    fee_fen: int = 0  # provider fee (negative on refunds: returned fee)
    refund_id: str = ""
    out_refund_no: str = ""
    refund_fen: int = 0
    refund_status: str = ""
    body: str = ""
    attach: str = ""
    rate: str = "0.60%"


def fee_for(amount_fen: int, rate_per_mille: int = 6) -> int:
    """0.6% rounded half up to the fen (the sandboxes' fee schedule)."""
    return (amount_fen * rate_per_mille + 500) // 1000


# ---------------------------------------------------------------------------------------------
# Running an ASGI app under uvicorn in a background thread on a free loopback port.


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class ThreadServer:
    url: str
    thread: threading.Thread
    server: Any
    loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def call(self, coro_factory: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop (sandbox control from synchronous test code)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(_await(coro_factory), self.loop).result(timeout)


async def _await(factory: Callable[[], Awaitable[Any]]) -> Any:
    return await factory()


def serve_in_thread(app: Any, *, port: int | None = None, log_level: str = "warning") -> ThreadServer:
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level=log_level, lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    handle = ThreadServer(url=f"http://127.0.0.1:{port}", thread=threading.Thread(), server=server)

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        handle.loop = loop
        loop.run_until_complete(server.serve())
        loop.close()

    handle.thread = threading.Thread(target=run, name=f"sandbox-{port}", daemon=True)
    handle.thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not handle.thread.is_alive():
            raise RuntimeError(f"sandbox server on port {port} did not start")
        time.sleep(0.01)
    return handle


def order_bill_rows(
    base: dict[str, Any],
    *,
    paid_at: dt.datetime,
    amount_fen: int,
    refunds: list[tuple[dt.datetime | None, str, str, int]],
    bill_date: dt.date,
) -> list[BillRow]:
    """The bill rows one paid order contributes to a China-time day: its payment, if it was paid
    that day, and each refund (success time, refund id, out refund no, amount) that succeeded that day."""
    rows: list[BillRow] = []
    if paid_at.astimezone(CHINA_TZ).date() == bill_date:
        rows.append(BillRow(traded_at=paid_at, status="SUCCESS", fee_fen=fee_for(amount_fen), **base))
    for success_time, refund_id, out_refund_no, refund_fen in refunds:
        if success_time and success_time.astimezone(CHINA_TZ).date() == bill_date:
            rows.append(
                BillRow(
                    traded_at=success_time,
                    status="REFUND",
                    fee_fen=-fee_for(refund_fen),
                    refund_id=refund_id,
                    out_refund_no=out_refund_no,
                    refund_fen=refund_fen,
                    refund_status="SUCCESS",
                    **base,
                )
            )
    return rows


def deliveries_json(records: list[DeliveryRecord]) -> list[dict[str, Any]]:
    """What the test controls report of deliveries: who was called and what they answered."""
    return [
        {
            "label": r.label,
            "status_code": r.status_code,
            "response": r.response.decode("utf-8", "replace"),
            "forged": r.forged,
        }
        for r in records
    ]


class NotifierControls:
    """Test controls every sandbox shares: release held notifications, list what was delivered."""

    notifier: Notifier

    async def _control_release(self, request: Request) -> Response:
        payload = await request.json() if await request.body() else {}
        records = await self.notifier.release(payload.get("order", "fifo"))
        return JSONResponse({"deliveries": deliveries_json(records)})

    async def _control_deliveries(self, request: Request) -> Response:
        return JSONResponse({"deliveries": deliveries_json(self.notifier.log)})


class RefundControls(NotifierControls):
    """WeChat Pay sandboxes: settle a refund (success or failure), which notifies the merchant."""

    orders: dict[Any, Any]
    settle_refund: Callable[..., Awaitable[list[DeliveryRecord]]]

    async def _control_settle(self, request: Request) -> Response:
        payload = await request.json()
        for order in self.orders.values():
            refund = order.refunds.get(payload["out_refund_no"])
            if refund is not None:
                at = dt.datetime.fromisoformat(payload["at"]) if payload.get("at") else None
                records = await self.settle_refund(
                    order, refund, parse_delivery(payload), status=payload.get("status", "SUCCESS"), at=at
                )
                return JSONResponse({"status": refund.status, "deliveries": deliveries_json(records)})
        return JSONResponse({"error": "no such refund"}, status_code=404)
