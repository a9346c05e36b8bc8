"""Results posted home reach the carrier the settings name, and a failed posting is posted again.

Development has no hard-coded host: ``wojia serve`` on a port other than 8000 (what ``make run
PORT=8150`` runs) posts the waybill to the postal sandbox it serves itself. When the carrier is
down, the posting job fails; the sweep behind it posts the result once the carrier answers, each
result in its own transaction, and never twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import Any

import httpx
import pytest
from sqlmodel import select

from tests.columns.gov_services.conftest import (
    API,
    SANDBOX,
    Resident,
    jpeg,
    make_resident,
    make_staff,
    new_application,
)
from tests.conftest import LoginFn, free_port, real_login, wojia_serve

OLD_AGE = "BZ-MZ-001"  # 老年人优待证: a paper card, posted on request
DEPARTMENT = "谯城区民政局"
ADDRESS = {"name": "李秀英", "phone": "13800000002", "address": "安徽省亳州市谯城区汤王大道66号"}


async def accepted_for_posting(client: httpx.AsyncClient, login: LoginFn) -> tuple[Resident, str]:
    """An application for the paper card, to be posted, accepted by the department (in-process)."""
    r = await make_resident(client, login, level=2)
    app = await new_application(client, r, OLD_AGE)
    resp = await client.post(
        f"{API}/applications/{app['id']}/prefill",
        json={"groups": ["person", "certificate"]},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    resp = await client.post(
        f"{API}/applications/{app['id']}/uploads",
        data={"material": "近期免冠彩色证件照片"},
        files={"file": ("me.jpg", jpeg(), "image/jpeg")},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    resp = await client.post(
        f"{API}/applications/{app['id']}/submit",
        json={"delivery": "免费邮寄", "address": ADDRESS},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    resp = await client.post(f"{API}/review/applications/{app['id']}/accept", headers=reviewer)
    assert resp.status_code == 200, resp.text
    return r, str(app["id"])


async def test_a_server_on_another_port_posts_the_waybill_to_itself(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r, app_id = await accepted_for_posting(client, login)
    # The deployment's own command, with nothing but its port: no public base URL, no postal URL.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"WOJIA_PUBLIC_BASE_URL", "WOJIA_COLUMN_GOV_SERVICES_POSTAL_URL"}
    }
    async with wojia_serve(env) as served:
        assert served.base_url.port != 8000
        reviewer = await real_login(served, roles=["reviewer"], department=DEPARTMENT)
        resp = await served.post(f"{API}/review/applications/{app_id}/approve", json={}, headers=reviewer)
        assert resp.status_code == 200, resp.text
        detail: dict[str, Any] = {}
        for _ in range(200):
            detail = (await served.get(f"{API}/applications/{app_id}", headers=r.headers)).json()
            if detail["status"] == "posted":
                break
            await asyncio.sleep(0.05)
        assert detail["status"] == "posted", detail
        # The waybill is in the postal sandbox of the server on that port (the carrier knows it).
        resp = await served.post(f"{SANDBOX}/postal/v1/waybills/{detail['tracking_no']}/deliver")
        assert resp.status_code == 200, resp.text


async def test_a_posting_that_failed_is_posted_by_the_sweep_once(
    client: httpx.AsyncClient,
    login: LoginFn,
    gov_catalogue: None,
    live_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app_api.core.db import session_scope, utcnow
    from columns.gov_services import delivery
    from columns.gov_services.config import get_config
    from columns.gov_services.models import Application, Waybill

    r, app_id = await accepted_for_posting(client, login)
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    # The carrier is down: nothing listens where the settings point.
    monkeypatch.setattr(get_config(), "postal_url", f"http://127.0.0.1:{free_port()}")
    resp = await client.post(f"{API}/review/applications/{app_id}/approve", json={}, headers=reviewer)
    assert resp.status_code == 200, resp.text
    await asyncio.sleep(0.2)  # the posting job ran after the commit, and failed
    now = dt.timedelta(0)
    async with session_scope() as s:
        app = await s.get(Application, app_id)
        assert app is not None and app.decided_at is not None
        # The sweeps below look at this result (and any decided after it), not at other tests'.
        within = utcnow() - app.decided_at + dt.timedelta(seconds=30)
        assert app_id in await delivery.pending_posts(s, older_than=now, within=within, limit=10_000)
    posted, failed = await delivery.post_pending(older_than=now, within=within, limit=10_000)
    assert failed >= 1  # each result failed on its own; the sweep went through all of them
    async with session_scope() as s:
        app = await s.get(Application, app_id)
        assert app is not None and app.status == "approved"

    # The carrier is back: the next sweep posts it, and the one after does not post it again.
    monkeypatch.setattr(get_config(), "postal_url", f"{live_url}{SANDBOX}/postal")
    posted, _ = await delivery.post_pending(older_than=now, within=within, limit=10_000)
    assert posted >= 1
    await delivery.post_pending(older_than=now, within=within, limit=10_000)
    async with session_scope() as s:
        app = await s.get(Application, app_id)
        waybills = (await s.exec(select(Waybill).where(Waybill.application_id == app_id))).all()
        assert app is not None and app.status == "posted"
        assert [w.tracking_no for w in waybills] == [app.tracking_no]
        assert app_id not in await delivery.pending_posts(s, older_than=now, within=within, limit=10_000)
    detail = (await client.get(f"{API}/applications/{app_id}", headers=r.headers)).json()
    assert detail["status"] == "posted" and detail["tracking_no"] == app.tracking_no
