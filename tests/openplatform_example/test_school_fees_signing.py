"""The example column's own check of the platform's notification signature: the worked example of
docs/openplatform.md, agreement with the platform's signer, and each way a notification is refused;
its notify endpoint acknowledges a redelivery without recording it twice and refuses a replay."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from school_fees import signing
from school_fees.app import NOTIFY_PATH, Settings, create_app
from school_fees.platform import Config

from app_api.core import signing as platform_signing

pytestmark = pytest.mark.backend_independent

KEY = "k3Y-example-cashier-secret-0123456789abcdefXYZ"
APP_ID = "wjc_example_client"
DOC_BODY = (
    '{"out_order_no":"F20261203001","sub":"9f2c4e1a7b","amount_fen":20000,'
    '"description":"交通违法罚款","sub_account":"fines-01"}'
).encode()


def test_the_worked_example_of_the_developer_guide() -> None:
    text = signing.string_to_sign(
        "POST", "/api/v1/openplatform/cashier/orders", "1796280000", "a1b2c3d4e5f60718293a4b5c", DOC_BODY
    )
    assert text.split("\n")[-1] == "880a9be475c6fdd4f0c5d1e57b11df5ffbe398c28a5cbcff65065a8a9ea49e77"
    sig = signing.sign(
        KEY, "POST", "/api/v1/openplatform/cashier/orders", "1796280000", "a1b2c3d4e5f60718293a4b5c", DOC_BODY
    )
    assert sig == "chjE8p/km2EFqukXja4DGkPFnAeajA6Pg+y30R4zUG4="
    guide = (Path(__file__).resolve().parents[2] / "docs" / "openplatform.md").read_text()
    assert sig in guide and text.split("\n")[-1] in guide


def _platform_notice(
    body: bytes, path: str = NOTIFY_PATH, key: str = KEY, now: float | None = None
) -> dict[str, str]:
    """Headers exactly as the platform signs a notification (its own signer)."""
    return platform_signing.signed_headers(
        app_id=APP_ID, secret=key, method="POST", path=path, body=body, now=now
    ).headers


def test_a_genuine_notification_passes_and_every_alteration_is_refused() -> None:
    body = json.dumps({"notice_id": "n1", "event": "order.paid", "amount_fen": 128000}).encode()
    h = _platform_notice(body)
    ok = {"app_id": APP_ID, "key": KEY, "method": "POST", "path": NOTIFY_PATH}
    assert signing.verify(h, body=body, **ok) is None
    # Header names are case-insensitive in HTTP.
    assert signing.verify({k.upper(): v for k, v in h.items()}, body=body, **ok) is None
    assert signing.verify(h, body=body.replace(b"128000", b"128001"), **ok) == "bad_signature"
    assert signing.verify(h, body=body, **{**ok, "path": "/cashier/notify2"}) == "bad_signature"
    assert signing.verify(h, body=body, **{**ok, "key": KEY + "x"}) == "bad_signature"
    assert signing.verify(h, body=body, **{**ok, "app_id": "another"}) == "wrong_app_id"
    assert signing.verify({**h, "x-signature": ""}, body=body, **ok) == "bad_signature"
    assert signing.verify({**h, "x-nonce": "short"}, body=body, **ok) == "bad_nonce"
    for missing in ("x-timestamp", "x-app-id"):
        assert signing.verify({k: v for k, v in h.items() if k != missing}, body=body, **ok) is not None
    # Five minutes of clock skew either way, not a second more.
    now = time.time()
    assert signing.verify(_platform_notice(body, now=now - 299), body=body, now=now, **ok) is None
    assert (
        signing.verify(_platform_notice(body, now=now - 302), body=body, now=now, **ok) == "stale_timestamp"
    )
    assert (
        signing.verify(_platform_notice(body, now=now + 302), body=body, now=now, **ok) == "stale_timestamp"
    )


def test_the_example_signs_requests_as_the_platform_verifies_them() -> None:
    for _ in range(20):
        body = secrets.token_bytes(secrets.randbelow(200))
        path = "/api/v1/openplatform/cashier/orders/" + secrets.token_hex(4)
        h = signing.headers(app_id=APP_ID, key=KEY, method="POST", path=path, body=body)
        assert platform_signing.verify_request(h, secret=KEY, method="POST", path=path, body=body) is None
        assert (
            platform_signing.verify_request(h, secret=KEY, method="POST", path=path, body=body + b" ")
            == "bad_signature"
        )


@pytest.fixture
async def example(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        platform=Config(
            issuer="https://platform.invalid",
            client_id=APP_ID,
            client_secret="unused",
            cashier_key=KEY,
            redirect_uri="https://127.0.0.1:1/oidc/callback",
        ),
        db_path=str(tmp_path / "school_fees.db"),
        operator_token="op-" + secrets.token_hex(8),
    )
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://school") as c:
            c.headers["x-test-operator"] = settings.operator_token
            yield c


async def _post(c: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await c.post(NOTIFY_PATH, content=body, headers={**headers, "content-type": "application/json"})


async def _notices(c: httpx.AsyncClient) -> list[dict[str, Any]]:
    op = {"authorization": "Bearer " + c.headers["x-test-operator"]}
    return list((await c.get("/operator/notices", headers=op)).json()["notices"])


async def test_the_notify_endpoint_records_once_and_refuses_forgeries_and_replays(
    example: httpx.AsyncClient,
) -> None:
    body = json.dumps(
        {
            "notice_id": "nt_" + secrets.token_hex(6),
            "event": "order.paid",
            "order_id": "o1",
            "out_order_no": "SFnone",
            "amount_fen": 100,
        },
        separators=(",", ":"),
    ).encode()
    first = _platform_notice(body)
    r = await _post(example, body, first)
    assert r.status_code == 200 and r.json() == {"code": "SUCCESS"}
    # The platform's redelivery (its answer was lost): signed anew, acknowledged, recorded once.
    r = await _post(example, body, _platform_notice(body))
    assert r.status_code == 200 and r.json() == {"code": "SUCCESS"}
    [notice] = await _notices(example)
    assert notice["deliveries"] == 2 and notice["event"] == "order.paid"
    # The very same request again (a replay by whoever captured it): refused, not counted.
    r = await _post(example, body, first)
    assert r.status_code == 401 and r.json()["message"] == "nonce_replayed"
    # Signed with another key, or a changed body: refused, so the platform retries; nothing recorded.
    forged = json.dumps({"notice_id": "nt_forged", "event": "order.paid"}).encode()
    r = await _post(example, forged, _platform_notice(forged, key="not-the-key-" + secrets.token_hex(8)))
    assert r.status_code == 401 and r.json() == {"code": "FAIL", "message": "bad_signature"}
    r = await _post(example, forged, first)
    assert r.status_code == 401
    [notice] = await _notices(example)
    assert notice["deliveries"] == 2
    # The back office is closed without the operator's token.
    assert (await example.get("/operator/notices")).status_code == 401


async def test_an_order_closed_unpaid_makes_the_bill_payable_again_under_a_new_number(
    example: httpx.AsyncClient, tmp_path: Path
) -> None:
    from school_fees.store import Store

    store = Store(str(tmp_path / "school_fees.db"))  # the example's own file, as its process sees it
    store.ensure_demo_bill("sub-1", student="李明轩", term="2026年秋季学期", amount_fen=128000)
    [bill] = store.bills_of("sub-1")
    store.set_order(bill["id"], "order-1")
    body = json.dumps(
        {
            "notice_id": "nt_" + secrets.token_hex(6),
            "event": "order.closed",
            "order_id": "order-1",
            "out_order_no": bill["out_order_no"],
        },
        separators=(",", ":"),
    ).encode()
    r = await _post(example, body, _platform_notice(body))
    assert r.status_code == 200 and r.json() == {"code": "SUCCESS"}
    [reopened] = store.bills_of("sub-1")
    assert reopened["status"] == "unpaid" and reopened["order_id"] is None
    assert reopened["out_order_no"] == f"SF{bill['id']}-2" != bill["out_order_no"]
    # Told again (a redelivery): nothing changes a second time.
    r = await _post(example, body, _platform_notice(body))
    assert r.status_code == 200 and store.bills_of("sub-1")[0]["out_order_no"] == f"SF{bill['id']}-2"
