"""The embedded default, as a deployment wires it: the app factory, the payments routers, the three
sandboxes mounted in the same process (keys generated at start), the real SDKs calling them over HTTP.

Run by test_payments_embedded.py in its own process (its settings differ from the test session's):
prints one JSON line with each provider's outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import tempfile

with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    PORT = sock.getsockname()[1]
TMP = tempfile.mkdtemp(prefix="wojia-embedded-")
os.environ.update(
    WOJIA_ENVIRONMENT="development",
    WOJIA_DATABASE_URL=f"sqlite+aiosqlite:///{TMP}/embedded.db",
    WOJIA_REDIS_URL="memory://",
    WOJIA_JOBS_EMBEDDED="true",
    WOJIA_PUBLIC_BASE_URL=f"http://127.0.0.1:{PORT}",
    WOJIA_LOG_JSON="false",
    WOJIA_VAR_DIR=TMP,
)


async def main() -> dict[str, object]:
    import httpx
    import uvicorn
    from sqlmodel import select

    from app_api.core.db import session_scope
    from app_api.platform.accounts.models import Account
    from app_api.wiring.app import create_app
    from payments.component import component
    from payments.hooks import on_paid
    from payments.models import PaymentOrder
    from payments.orders import create_order, start_payment

    app = create_app()  # development: the payments routers, and the sandboxes its component builds
    for box in component.sandboxes:
        if not any(getattr(r, "path", "") == box.prefix for r in app.routes):
            built = box.build()
            assert built is not None, "payments is not in sandbox mode"
            app.mount(box.prefix, built)
    import payments.tasks  # noqa: F401

    told: list[str] = []

    @on_paid("embedded.bill")
    async def bill_paid(session, paid) -> None:  # type: ignore[no-untyped-def]
        told.append(paid.order_id)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    result: dict[str, object] = {}
    try:
        async with session_scope() as s:
            account = Account(phone_hash=secrets.token_hex(8), phone_enc=b"x")
            s.add(account)
        for provider in ("wechat_v2", "wechat_v3", "alipay"):
            async with session_scope() as s:
                order = await create_order(
                    s, account_id=account.id, purpose="embedded.bill", purpose_ref=provider, amount_fen=1234,
                    description="水费", provider=provider, channel="miniprogram",
                )  # fmt: skip
                await start_payment(
                    s, order=order, payer_id="2088000000000001" if provider == "alipay" else "o1",
                    client_ip="10.0.0.1",
                )  # fmt: skip
            async with httpx.AsyncClient() as client:
                r = await client.post(f"http://127.0.0.1:{PORT}/sandbox/payments/{provider}/_sandbox/pay",
                                      json={"out_trade_no": order.out_trade_no})  # fmt: skip
            async with session_scope() as s:
                status = (await s.exec(select(PaymentOrder.status).where(PaymentOrder.id == order.id))).one()
            result[provider] = {"ack": r.json()["deliveries"][0]["status_code"], "status": status}
        for _ in range(100):
            if len(told) >= 3:
                break
            await asyncio.sleep(0.05)
        result["told"] = len(told)
    finally:
        server.should_exit = True
        await task
    return result


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    from app_api.wiring.migrate import upgrade

    upgrade()
    print(json.dumps(asyncio.run(main())))
