"""Sandbox mode with more than one process behaves like one process.

The sandboxes' keys and merchant numbers are made once per installation and read by every
process: processes starting at the same moment end with the same keys; a separate process (the
job worker, here the test process) signs requests the api's sandboxes accept, so it can refund.
Under ``wojia serve --workers 2`` the workers share one set of sandboxes, so a payment created
through one worker is paid, queried, refunded and billed through any. WeChat Pay v3 and Alipay
bills of a day with payments download through the sandbox URL (its ``/sandbox/payments/<provider>``
prefix included).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wojia_serve

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = ("wechat_v2", "wechat_v3", "alipay")


def served_env() -> dict[str, str]:
    """The test session's environment (database, Redis, var directory) with no public base URL:
    ``wojia serve`` takes it from its port."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in {"WOJIA_PUBLIC_BASE_URL", "WOJIA_PAYMENTS_SANDBOX_URL"}
    }


async def test_processes_starting_together_make_one_set_of_keys(tmp_path: Path) -> None:
    path = tmp_path / "sandbox" / "payments_keys.json"
    script = (
        "import hashlib, json, sys, pathlib\n"
        "from payments.sandbox.keys import load_or_create\n"
        "k = load_or_create(pathlib.Path(sys.argv[1]))\n"
        "print(json.dumps([k.v2_mch_id, k.v3_mchid, k.alipay_app_id,"
        " hashlib.sha256((k.v3_merchant_key + k.alipay_app_key + k.v3_platform_key).encode()).hexdigest()]))\n"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(path), cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(6)
    ]
    outs = [json.loads((await p.communicate())[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({json.dumps(o) for o in outs}) == 1, outs
    assert sorted(os.listdir(path.parent)) == ["payments_keys.json"]  # no temporary file left
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def providers_at(base_url: str) -> dict[str, Any]:
    """This process's providers, built from the installation's keys, pointed at ``base_url``."""
    from payments.config import get_payments_settings
    from payments.registry import build_sandbox_providers
    from payments.sandbox.keys import load_or_create

    keys = load_or_create(get_payments_settings().sandbox_keys_file)
    providers, _ = build_sandbox_providers(f"{base_url}/sandbox/payments", keys)
    return providers


async def pay_refund_and_bill(
    served: httpx.AsyncClient, providers: dict[str, Any], per_provider: int
) -> None:
    """Orders created, paid, queried and refunded through the server's sandboxes by this process's
    providers, each sandbox call on a new connection; then today's bill lists them."""
    from app_api.core.clock import china_today
    from payments.providers.base import (
        Channel,
        CreatePayment,
        RefundRequest,
        RefundState,
        TradeState,
    )

    base = str(served.base_url).rstrip("/")
    fresh = httpx.Limits(max_keepalive_connections=0)
    made: dict[str, list[str]] = {p: [] for p in PROVIDERS}
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=fresh) as control:
        for name in PROVIDERS:
            provider = providers[name]
            for _ in range(per_provider):
                out_trade_no = "X" + secrets.token_hex(10)
                created = await provider.create(
                    CreatePayment(
                        out_trade_no=out_trade_no,
                        amount_fen=1234,
                        description="水费",
                        channel=Channel.APP,
                        notify_url=f"{base}/api/v1/payments/notify/{name}",
                    )
                )
                pay: dict[str, Any] = {"out_trade_no": out_trade_no}
                if name == "alipay":
                    pay = {"order_string": created.client_params["orderStr"]}
                r = await control.post(f"/sandbox/payments/{name}/_sandbox/pay", json=pay)
                assert r.status_code == 200, (name, r.status_code, r.text)
                status = await provider.query(out_trade_no)
                assert status.state == TradeState.PAID, (name, status)
                refund = await provider.refund(
                    RefundRequest(
                        out_trade_no=out_trade_no,
                        out_refund_no="R" + secrets.token_hex(8),
                        total_fen=1234,
                        refund_fen=234,
                        notify_url=f"{base}/api/v1/payments/notify/{name}",
                    )
                )
                assert refund.state in {RefundState.PROCESSING, RefundState.SUCCEEDED}, (name, refund)
                made[name].append(out_trade_no)
    for name in PROVIDERS:
        bill = await providers[name].download_bill(china_today())
        content = bill.content
        if name == "alipay":  # a zip of GBK CSVs
            import io
            import zipfile

            with zipfile.ZipFile(io.BytesIO(content)) as z:
                content = b"".join(z.read(n) for n in z.namelist())
            text = content.decode("gbk")
        else:
            text = content.decode()
        assert all(no in text for no in made[name]), (name, text[:2000])


async def test_a_separate_process_pays_refunds_and_reconciles_with_the_api_sandboxes() -> None:
    async with wojia_serve(served_env()) as served:
        assert served.base_url.port != 8000
        await pay_refund_and_bill(served, providers_at(str(served.base_url).rstrip("/")), per_provider=2)


@pytest.mark.slow
async def test_two_workers_share_one_set_of_sandboxes() -> None:
    async with wojia_serve(served_env(), "--workers", "2") as served:
        await pay_refund_and_bill(served, providers_at(str(served.base_url).rstrip("/")), per_provider=6)
