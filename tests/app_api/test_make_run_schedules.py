"""Under ``make run`` the periodic jobs run by themselves: a notification due for retry is retried
on time by the server's own minute sweep (``app.notify_sweep``), with nobody running it by hand.

The server is started as ``make run`` starts it (``wojia serve`` on a port other than 8000, in a
subprocess, after ``db upgrade``) with the embedded default: a SQLite file of its own, ``memory://``
Redis, the in-process broker and the jobs loop in the api process. An operator creates the first
admin with ``wojia staff create`` (instead of ``make run``'s ``seed``, which takes half a minute and
is not needed); everything else goes through that server's HTTP API: the admin opens a station and
makes an agent; a resident logs in by SMS, binds WeChat and allows one subscription message through
the WeChat sandbox the server mounts under ``/sandbox/wechat``; the agent records a mandate for the
resident (confirmed with the code from the resident's SMS inbox), which notifies the resident; the
WeChat sandbox fails that first send once ("system busy"), so the notification is ``retrying``; the
admin's ``/admin/notifications`` shows when it is due and when it went out.

Differences from a bare ``make run``, both settings of the notification itself, not of the jobs:
the WeChat template id for the mandate notification (a deployment names its console's templates;
without one the message goes by SMS, which has no failure to inject), and a 10 s retry backoff
instead of 60 s so the test stays under two minutes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.conftest as harness
from app_api.core.clock import CHINA_TZ
from tests.conftest import free_port, new_phone, real_login, sms_code, wojia_serve

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"
WECHAT = "/sandbox/wechat"
TEMPLATE = "agents.mandate_created"
TEMPLATE_ID = "tmpl-mandate-created-01"
BACKOFF_S = 10.0
ON_TIME_S = 75.0  # a minute's sweep, and some slack for the sweep itself


def make_run_env(tmp: Path, port: int) -> dict[str, str]:
    """What ``make run PORT=<port>`` gives the server: the embedded default, nothing of the test
    process's own settings (its database, its Redis, its WOJIA_JOBS_RUN_LOOP=false)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WOJIA_", "_WOJIA_"))}
    env.update(
        WOJIA_ENVIRONMENT="development",
        WOJIA_DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'wojia.db'}",
        WOJIA_REDIS_URL="memory://",
        WOJIA_VAR_DIR=str(tmp),
        WOJIA_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        WOJIA_MP_WECHAT_TEMPLATE_IDS=json.dumps({TEMPLATE: TEMPLATE_ID}),
        WOJIA_NOTIFY_RETRY_BACKOFF_S=json.dumps([BACKOFF_S]),
    )
    return env


async def cli(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app_api.wiring.cli",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"wojia {' '.join(args)} exited {proc.returncode}:\n{text[-3000:]}"
    return text


async def staff_login(client: httpx.AsyncClient, phone: str, password: str) -> dict[str, str]:
    """A staff login as the staff console does it: password and SMS code."""
    r = await client.post(f"{API}/auth/sms-codes", json={"phone": phone})
    assert r.status_code == 202, r.text
    code = await sms_code(client, phone)
    r = await client.post(
        f"{API}/auth/staff/login", json={"phone": phone, "code": code, "password": password}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def new_agent(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    """The admin opens a village agent point and makes a new account its agent; the agent logs in."""
    r = await client.post(
        f"{API}/admin/stations",
        json={
            "code": "T-" + secrets.token_hex(4),
            "name": "测试村代办点",
            "city": "亳州",
            "address": "安徽省亳州市谯城区测试村1号",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    phone, password = new_phone(), "Agent-" + secrets.token_hex(6)
    r = await client.post(
        f"{API}/admin/stations/{r.json()['id']}/agents",
        json={"phone": phone, "password": password},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return await staff_login(client, phone, password)


async def wechat_subscriber(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A resident logged in by SMS, with WeChat bound and one mandate message allowed; returns
    (account id, phone, openid)."""
    phone = new_phone()
    headers = await real_login(client, phone)
    account = (await client.get(f"{API}/me", headers=headers)).json()["id"]
    appid = "wx0000000000000dev"  # the development mini-program (WOJIA_MP_WECHAT_APP_ID's default)
    r = await client.post(f"{WECHAT}/_sandbox/login", json={"appid": appid})  # wx.login() on the phone
    assert r.status_code == 200, r.text
    code, openid = r.json()["code"], r.json()["openid"]
    r = await client.post(f"{API}/mp/wechat/bind", json={"code": code}, headers=headers)
    assert r.status_code == 200, r.text
    r = await client.get(f"{API}/mp/wechat/subscribe-templates", headers=headers)
    assert {"event": TEMPLATE, "template_id": TEMPLATE_ID} in [
        {"event": t["event"], "template_id": t["template_id"]} for t in r.json()["templates"]
    ], r.text
    # The resident taps "allow" in wx.requestSubscribeMessage; the mini-program reports it.
    r = await client.post(f"{WECHAT}/_sandbox/subscribe", json={"openid": openid, "template_id": TEMPLATE_ID})
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{API}/mp/wechat/subscriptions", json={"results": {TEMPLATE_ID: "accept"}}, headers=headers
    )
    assert r.status_code == 200, r.text
    # Whatever the time of day the test runs: no quiet hours holding the message back.
    r = await client.patch(
        f"{API}/me/notification-settings", json={"quiet_hours_enabled": False}, headers=headers
    )
    assert r.status_code == 200, r.text
    return account, phone, openid


async def mandate_by_sms(client: httpx.AsyncClient, agent: dict[str, str], phone: str) -> None:
    """The agent asks the resident for a mandate; the resident reads out the code from the SMS."""
    r = await client.post(
        f"{API}/agent/mandates/sms-requests",
        json={"phone": phone, "scopes": ["track"], "days": 30},
        headers=agent,
    )
    assert r.status_code == 202, r.text
    request_id = r.json()["request_id"]
    r = await client.get(f"{API}/dev/sms", params={"phone": phone})
    texts = [m["text"] for m in r.json()["messages"]]
    found = [m.group(1) for t in texts if (m := re.search(r"授权验证码(\d{6})", t))]
    assert found, texts
    r = await client.post(
        f"{API}/agent/mandates/sms-confirm", json={"request_id": request_id, "code": found[0]}, headers=agent
    )
    assert r.status_code == 201, r.text


async def delivery_of(client: httpx.AsyncClient, admin: dict[str, str], account: str) -> dict[str, Any]:
    r = await client.get(f"{API}/admin/notifications", params={"template": TEMPLATE}, headers=admin)
    assert r.status_code == 200, r.text
    mine = [i for i in r.json()["items"] if i["account_id"] == account]
    assert len(mine) == 1, r.json()
    return dict(mine[0])


def moment(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_make_run_retries_a_notification_on_time_by_its_own_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    assert port != 8000
    with tempfile.TemporaryDirectory(prefix="wojia-make-run-") as tmp:
        env = make_run_env(Path(tmp), port)
        await cli(env, "db", "upgrade")
        admin_phone, admin_password = new_phone(), "Admin-" + secrets.token_hex(6)
        await cli(
            env, "staff", "create", "--phone", admin_phone, "--role", "admin", "--password", admin_password
        )
        # wojia_serve picks its port with free_port(): hand it the one WOJIA_PUBLIC_BASE_URL names,
        # as make run passes the same PORT to both.
        monkeypatch.setattr(harness, "free_port", lambda: port)
        async with wojia_serve(env) as served:
            assert served.base_url.port == port
            account, phone, openid = await wechat_subscriber(served)
            admin = await staff_login(served, admin_phone, admin_password)
            agent = await new_agent(served, admin)

            # WeChat is busy for this resident's next send ("system busy", errcode -1): passing.
            r = await served.post(
                f"{WECHAT}/_sandbox/fail",
                json={"path": "subscribe_send", "errcode": -1, "times": 1, "openid": openid},
            )
            assert r.status_code == 200, r.text
            await mandate_by_sms(served, agent, phone)

            # The first attempt (the delivery job after the commit) failed: retrying, due later.
            n: dict[str, Any] = {}
            for _ in range(100):
                n = await delivery_of(served, admin, account)
                if n["status"] != "pending" and n["attempts"] >= 1:
                    break
                await asyncio.sleep(0.1)
            assert n["status"] == "retrying" and n["attempts"] == 1, n
            assert [(t["channel"], t["ok"]) for t in n["tries"]] == [("wechat", False)], n
            assert n["next_attempt_at"] is not None, n
            due = moment(n["next_attempt_at"])
            first_try = moment(n["tries"][0]["at"])
            assert BACKOFF_S - 2 <= (due - first_try).total_seconds() <= BACKOFF_S + 2, n

            # Nobody sweeps by hand: the server's minute schedule must take it once it is due.
            deadline = time.monotonic() + (due - dt.datetime.now(dt.UTC)).total_seconds() + ON_TIME_S
            while time.monotonic() < deadline:
                n = await delivery_of(served, admin, account)
                if n["status"] not in ("pending", "retrying"):
                    break
                await asyncio.sleep(1)
            late = (dt.datetime.now(dt.UTC) - due).total_seconds()
            assert n["status"] == "sent", f"not delivered {late:.0f} s after it was due: {n}"
            assert n["channel"] == "wechat" and n["attempts"] == 2, n
            assert [(t["channel"], t["ok"]) for t in n["tries"]] == [("wechat", False), ("wechat", True)], n
            retried = moment(n["tries"][1]["at"])
            # Not before it was due (the backoff held), and within a minute's sweep after it.
            assert due <= retried <= due + dt.timedelta(seconds=ON_TIME_S), (due, retried)

            # WeChat got the message once, and the resident no SMS of it.
            r = await served.get(f"{WECHAT}/_sandbox/messages", params={"openid": openid})
            assert [m["template_id"] for m in r.json()["messages"]] == [TEMPLATE_ID], r.text
            r = await served.get(f"{API}/dev/sms", params={"phone": phone})
            assert not [m for m in r.json()["messages"] if m["template"] == TEMPLATE], r.text

            # The operators' view: the sweep's schedule ran, after the message was due.
            status = await cli(env, "jobs", "status")
            line = next((x for x in status.splitlines() if x.startswith("app.notify_sweep ")), None)
            assert line is not None, status
            # name, cron (5 fields), last run (date time), status, next run, last failure
            cols = line.split()
            assert cols[1:6] == ["*", "*", "*", "*", "*"], line
            assert cols[6] != "-" and cols[8] == "done", f"no last run of the sweep:\n{status}"
            last_run = dt.datetime.strptime(f"{cols[6]} {cols[7]}", "%Y-%m-%d %H:%M:%S")
            assert last_run.replace(tzinfo=CHINA_TZ) >= due - dt.timedelta(seconds=1), (line, due)
