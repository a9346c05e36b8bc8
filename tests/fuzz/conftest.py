"""The four roles the fuzz run logs in as, through the real SMS (and staff password) flows.

The fuzz tests write random data through every operation, so they are collected last: the other
tests never see their leftovers, whatever order pytest would otherwise pick.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import real_login

ROLES = ("resident", "reviewer", "agent", "finance")
# The department the reviewer works in: one the seeded catalogue routes applications to.
REVIEWER_DEPARTMENT = "谯城区民政局"
CENTER_URL = "WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL"
CENTER_SECRET = "WOJIA_COLUMN_PROVIDENT_FUND_SECRET"


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    fuzz = [i for i in items if "tests/fuzz/" in i.nodeid]
    if fuzz:
        items[:] = [i for i in items if "tests/fuzz/" not in i.nodeid] + fuzz


class Roles:
    """The fuzz run's four accounts. ``headers(role)`` logs the role in again (a new account of the same
    role: the SMS cooldown refuses a second code for the same phone within a minute) if a case ended
    its session; ``fresh(role)`` is a session of its own for operations that end the session they get."""

    def __init__(
        self, client: httpx.AsyncClient, makers: dict[str, Callable[[], Awaitable[dict[str, str]]]]
    ) -> None:
        self.client = client
        self.makers = makers
        self.current: dict[str, dict[str, str]] = {}
        self.station_id = ""

    async def fresh(self, role: str) -> dict[str, str]:
        return await self.makers[role]()

    async def headers(self, role: str) -> dict[str, str]:
        headers = self.current.get(role)
        if headers is None or (await self.client.get("/api/v1/me", headers=headers)).status_code == 401:
            headers = self.current[role] = await self.fresh(role)
        return headers


async def _rasa_reply(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse(
        [
            {"recipient_id": body.get("sender"), "text": "您好，我是我家助手。"},
            {"recipient_id": body.get("sender"), "buttons": [{"title": "办事指南", "payload": "/guide"}]},
        ]
    )


@pytest.fixture(scope="session")
def fuzz_upstreams() -> Iterator[None]:
    """The upstreams a resident's request reaches, as sandboxes on loopback: the provident-fund
    center and the WeChat and Alipay mini-program back ends (the test app serves no public base URL
    for the dev defaults to point at). Set up here as the columns' own test fixtures do, so the fuzz
    run sees the same environment whichever tests ran before it."""
    from pydantic import SecretStr

    from bot.config import get_bot_settings
    from columns.provident_fund.config import get_config
    from columns.provident_fund.sandbox.center import FundCenterSandbox
    from miniprogram_bridge import alipay, wechat
    from miniprogram_bridge.config import get_mp_settings
    from miniprogram_bridge.sandbox.alipay import AlipayOAuthSandbox
    from miniprogram_bridge.sandbox.wechat import WeChatSandbox
    from payments.sandbox.common import serve_in_thread

    # The assistant's NLU server (Rasa takes 30-40 s to load; the ``rasa`` tests cover it): a stand-in
    # answering as Rasa's REST channel does, so the fuzz reaches the app's own handling of a reply.
    rasa = serve_in_thread(Starlette(routes=[Route("/webhooks/rest/webhook", _rasa_reply, methods=["POST"])]))
    bot = get_bot_settings()
    saved_rasa = bot.rasa_url
    bot.rasa_url = rasa.url

    secret = "fuzz-center-" + secrets.token_hex(4)
    center = serve_in_thread(FundCenterSandbox(secret).app)
    saved_env = {k: os.environ.get(k) for k in (CENTER_URL, CENTER_SECRET)}
    os.environ[CENTER_URL] = center.url
    os.environ[CENTER_SECRET] = secret
    get_config.cache_clear()

    mp = get_mp_settings()
    wechat_box = WeChatSandbox()
    wechat_box.add_app(mp.wechat_app_id, mp.wechat_app_secret.get_secret_value())
    wechat_server = serve_in_thread(wechat_box.app)
    alipay_box = AlipayOAuthSandbox()
    alipay_app = alipay_box.add_app()
    alipay_server = serve_in_thread(alipay_box.app)
    saved_mp = {
        k: getattr(mp, k)
        for k in (
            "wechat_api_base",
            "alipay_app_id",
            "alipay_private_key",
            "alipay_public_key",
            "alipay_server_url",
        )
    }
    mp.wechat_api_base = wechat_server.url + "/"
    mp.alipay_app_id = alipay_app.app_id
    mp.alipay_private_key = SecretStr(alipay_app.private_key_pkcs1)
    mp.alipay_public_key = alipay_box.alipay_public_key_pem
    mp.alipay_server_url = alipay_server.url + "/gateway.do"
    wechat.reset()
    alipay.reset()
    yield
    for k, v in saved_mp.items():
        setattr(mp, k, v)
    wechat.reset()
    alipay.reset()
    for k, old in saved_env.items():
        if old is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = old
    get_config.cache_clear()
    bot.rasa_url = saved_rasa
    for server in (rasa, center, wechat_server, alipay_server):
        server.stop()


@pytest.fixture(scope="session")
async def fuzz_roles(app: Any, client: httpx.AsyncClient, fuzz_upstreams: None) -> Roles:
    """A real-named resident (level 3), a department reviewer, a station agent and a finance officer."""
    from app_api.core.db import session_scope
    from columns.gov_services import catalogue_store
    from tests.app_api.agents_helpers import make_station
    from tests.columns.gov_services.conftest import make_resident

    async with session_scope() as s:
        await catalogue_store.seed(s)

    async def login(phone: str | None = None, roles: list[str] | None = None, **kw: Any) -> dict[str, str]:
        return await real_login(client, phone, roles, **kw)

    station = await make_station(client, login)

    async def resident() -> dict[str, str]:
        return (await make_resident(client, login, level=3)).headers

    def staff(roles: list[str], **fields: Any) -> Callable[[], Awaitable[dict[str, str]]]:
        async def make() -> dict[str, str]:
            return await login(roles=roles, **fields)

        return make

    roles = Roles(
        client,
        {
            "resident": resident,
            "reviewer": staff(["reviewer"], department=REVIEWER_DEPARTMENT),
            "agent": staff(["agent"], station_id=station.id),
            "finance": staff(["finance"]),
        },
    )
    roles.station_id = station.id
    return roles


# Where real identifiers come from: (path parameter, role, list operation, key in its JSON).
ID_SOURCES = (
    ("station_id", "resident", "/api/v1/stations", "id"),
    ("code", "resident", "/api/v1/columns/gov_services/items", "code"),
    ("app_id", "resident", "/api/v1/columns/gov_services/applications", "id"),
    ("application_id", "resident", "/api/v1/columns/gov_services/applications", "id"),
    ("product_id", "resident", "/api/v1/columns/loans/products", "id"),
    ("application_id", "resident", "/api/v1/columns/loans/applications", "id"),
    ("notice_id", "resident", "/api/v1/columns/notices/notices", "id"),
    ("notification_id", "resident", "/api/v1/me/notifications", "id"),
    ("consent_id", "resident", "/api/v1/me/consents", "id"),
    ("order_id", "resident", "/api/v1/payments/orders", "id"),
    ("order_id", "finance", "/api/v1/payments/finance/orders", "id"),
    ("run_id", "finance", "/api/v1/payments/finance/reconciliation/runs", "id"),
    ("mandate_id", "agent", "/api/v1/agent/mandates", "id"),
    ("binding_id", "resident", "/api/v1/columns/utilities/bindings", "id"),
    ("payment_id", "resident", "/api/v1/columns/utilities/payments", "id"),
    ("withdrawal_id", "resident", "/api/v1/columns/provident_fund/withdrawals", "id"),
)
PER_PARAMETER = 3


def _walk(data: Any, key: str, out: list[str]) -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key and isinstance(v, (str, int)) and not isinstance(v, bool):
                out.append(str(v))
            else:
                _walk(v, key, out)
    elif isinstance(data, list):
        for v in data:
            _walk(v, key, out)


@pytest.fixture(scope="session")
async def known_ids(client: httpx.AsyncClient, fuzz_roles: Roles) -> dict[str, list[str]]:
    """Identifiers that exist, per path parameter name: part of each operation's cases use them, so
    the fuzz reaches past "not found" (the resident files a draft application first)."""
    resident = await fuzz_roles.headers("resident")
    me = (await client.get("/api/v1/me", headers=resident)).json()
    r = await client.post(
        "/api/v1/columns/gov_services/applications",
        json={"item_code": "BZ-MZ-001", "client_key": secrets.token_hex(16)},
        headers=resident,
    )
    assert r.status_code == 201, r.text
    found: dict[str, list[str]] = {
        "resident_id": [me["id"]],
        "station_id": [fuzz_roles.station_id],
        "slug": ["gov_services", "utilities"],
    }
    for name, role, path, key in ID_SOURCES:
        resp = await client.get(path, headers=await fuzz_roles.headers(role))
        if resp.status_code != 200:
            continue
        values: list[str] = []
        _walk(resp.json(), key, values)
        bucket = found.setdefault(name, [])
        for v in values:
            if v not in bucket and len(bucket) < PER_PARAMETER:
                bucket.append(v)
    return {k: v for k, v in found.items() if v}
