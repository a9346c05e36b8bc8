"""The fault suite's external systems, in a process of their own (they must outlive api restarts):
WeChat Pay v2 (one merchant, keys given on the command line) and the three billers.

``python -m tests.faults.sandboxes --port P --secret S --appid A --mch-id M --api-key K``

Every api worker, the worker and the scheduler talk to this one process, so there is one provider
and one set of billers however many processes the platform runs. The provider behaves like WeChat
Pay: a notification the merchant did not acknowledge (``SUCCESS``) is sent again later, on a
compressed version of WeChat's schedule, until it is acknowledged. ``GET /_faults/unacked`` lists
notifications not acknowledged yet; ``GET /_faults/acked`` lists the acknowledged ones with how many
deliveries each took.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from columns.utilities.sandbox.biller import BillerSandbox, sandbox_app
from payments.sandbox.common import DeliveryRecord, Notifier, OutgoingNotification
from payments.sandbox.wechat_v2 import WeChatPayV2Sandbox

# Seconds between deliveries of an unacknowledged notification (WeChat: 15 s, 15 s, 30 s, 3 min, ...;
# compressed so a run stays within minutes; the last interval repeats).
RESEND_AFTER_S = (1.0, 2.0, 4.0, 8.0, 15.0)
RESEND_FOR_S = 600.0


class ResendingNotifier(Notifier):
    """Sends each notification until the merchant acknowledges it, as the provider does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unacked: dict[str, float] = {}  # label -> first sent (monotonic)
        self.acked: dict[str, int] = {}  # label -> deliveries it took
        self.deliveries: dict[str, int] = {}

    def _ok(self, record: DeliveryRecord) -> bool:
        return record.status_code is not None and self._accepted(record.status_code, record.response)

    async def _send(self, note: OutgoingNotification) -> list[DeliveryRecord]:
        records = await super()._send(note)
        self.deliveries[note.label] = self.deliveries.get(note.label, 0) + len(records)
        if any(self._ok(r) for r in records):
            self.acked.setdefault(note.label, self.deliveries[note.label])
            self.unacked.pop(note.label, None)
        elif note.label not in self.unacked and note.label not in self.acked:
            self.unacked[note.label] = time.monotonic()
            task = asyncio.create_task(self._resend(note))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return records

    async def _resend(self, note: OutgoingNotification) -> None:
        started = time.monotonic()
        n = 0
        while note.label in self.unacked and time.monotonic() - started < RESEND_FOR_S:
            await asyncio.sleep(RESEND_AFTER_S[min(n, len(RESEND_AFTER_S) - 1)])
            n += 1
            records = await super()._send(note)
            self.deliveries[note.label] = self.deliveries.get(note.label, 0) + len(records)
            if any(self._ok(r) for r in records):
                self.acked.setdefault(note.label, self.deliveries[note.label])
                self.unacked.pop(note.label, None)


def build(secret: str, appid: str, mch_id: str, api_key: str) -> Starlette:
    v2 = WeChatPayV2Sandbox()
    v2.notifier = ResendingNotifier(
        accepted=lambda status, body: status == 200 and b"<return_code><![CDATA[SUCCESS]]>" in body
    )
    v2.add_merchant(appid=appid, mch_id=mch_id, api_key=api_key)
    notifier = v2.notifier
    billers = {code: BillerSandbox(code, secret) for code in ("water", "power", "gas")}

    delay = {"s": 0.0}

    async def set_delay(request: Request) -> JSONResponse:
        delay["s"] = float((await request.json())["s"])
        return JSONResponse({"ok": True})

    async def unacked(request: Request) -> JSONResponse:
        return JSONResponse({"unacked": sorted(notifier.unacked)})

    async def acked(request: Request) -> JSONResponse:
        return JSONResponse({"acked": notifier.acked, "deliveries": notifier.deliveries})

    billers_app = sandbox_app(billers)

    async def slow_payments(scope: Scope, receive: Receive, send: Send) -> None:
        # Billers told of payments slowly, on request: keeps the worker's jobs in flight.
        if scope["type"] == "http" and scope["path"].endswith("/v1/payments") and delay["s"] > 0:
            await asyncio.sleep(delay["s"])
        await billers_app(scope, receive, send)

    return Starlette(
        routes=[
            Mount("/wechat_v2", app=v2.app),
            Mount("/billers", app=slow_payments),
            Route("/_faults/biller_delay", set_delay, methods=["POST"]),
            Route("/_faults/unacked", unacked),
            Route("/_faults/acked", acked),
            Route("/_faults/ping", lambda request: JSONResponse({"ok": True})),
        ]
    )


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--appid", required=True)
    ap.add_argument("--mch-id", required=True)
    ap.add_argument("--api-key", required=True)
    args = ap.parse_args()
    app = build(args.secret, args.appid, args.mch_id, args.api_key)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
