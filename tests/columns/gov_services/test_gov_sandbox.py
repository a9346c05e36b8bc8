"""The column's development sandboxes: mounted at ``/sandbox/gov_services``, the postal one checks
requests as ``app_api.core.signing`` says, and production modules never import the sandbox package."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.columns.gov_services.conftest import SANDBOX


async def test_postal_sandbox_checks_the_house_signature(client: httpx.AsyncClient) -> None:
    from app_api.core.signing import signed_headers
    from columns.gov_services.config import get_config

    cfg = get_config()
    url = f"{SANDBOX}/postal/v1/waybills"
    body = json.dumps(
        {
            "order_id": "sandbox-check-1",
            "receiver": {"name": "张三", "phone": "13900000000", "address": "亳州市"},
        }
    ).encode()

    def headers(secret: str) -> dict[str, str]:
        signed = signed_headers(
            app_id=cfg.postal_app_id, secret=secret, method="POST", path="/v1/waybills", body=body
        )
        return {"content-type": "application/json", **signed.headers}

    unsigned = await client.post(url, content=body, headers={"x-app-id": cfg.postal_app_id})
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "40002"
    wrong = await client.post(url, content=body, headers=headers("wrong-secret"))
    assert wrong.status_code == 401 and wrong.json()["code"] == "40003"
    good = await client.post(url, content=body, headers=headers(cfg.postal_secret.get_secret_value()))
    assert good.status_code == 200 and good.json()["code"] == "0", good.text
    again = await client.post(url, content=body, headers=headers(cfg.postal_secret.get_secret_value()))
    assert again.json()["data"]["tracking_no"] == good.json()["data"]["tracking_no"]  # idempotent


async def test_postal_sandbox_answers_a_body_that_is_not_a_json_object_with_the_protocols_400(
    client: httpx.AsyncClient,
) -> None:
    from app_api.core.signing import signed_headers
    from columns.gov_services.config import get_config

    cfg = get_config()
    secret = cfg.postal_secret.get_secret_value()
    bodies = [
        b"{not json",
        "收件人".encode("gbk"),
        b"[1, 2]",
        '{"order_id": "x", "receiver": "张三"}'.encode(),
    ]
    for body in bodies:
        signed = signed_headers(
            app_id=cfg.postal_app_id, secret=secret, method="POST", path="/v1/waybills", body=body
        )
        resp = await client.post(
            f"{SANDBOX}/postal/v1/waybills",
            content=body,
            headers={"content-type": "application/json", **signed.headers},
        )
        assert resp.status_code == 400, (body, resp.text)
        assert set(resp.json()) == {"code", "msg", "data"} and resp.json()["data"] is None
        assert resp.json()["code"] == ("40010" if body.startswith(b'{"order_id"') else "40012")


def test_production_modules_do_not_import_the_sandbox() -> None:
    modules = [
        "columns.gov_services",
        "columns.gov_services.router",
        "columns.gov_services.tasks",
        "columns.gov_services.seed",
        "columns.gov_services.capability",
        "columns.gov_services.postal",
        "columns.gov_services.storage",
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith('columns.gov_services.sandbox')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
