"""E-certificates reach the city's library through the adapter, and the resident's 证照夹.

The library tests run the HTTP adapter against the data exchange sandbox served as a process of its
own (``python -m app_api.platform.datahub.sandbox.serve``), stopped and started again like a library
that goes down; the wallet tests use the embedded default (the local adapter).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from app_api.core.crypto import encrypt_str
from app_api.core.db import session_scope, sessionmaker, utcnow
from app_api.core.jobs.models import OutboxMessage
from app_api.platform.audit.models import AuditEvent
from app_api.platform.datahub import certificates, wallet
from app_api.platform.datahub.models import ECertificate
from app_api.platform.datahub.service import ISSUE_TASK, Datahub, HttpDatahub, LocalDatahub, id_hash
from app_api.platform.datahub.validity import valid_until
from tests.columns.gov_services.conftest import (
    API,
    Resident,
    jpeg,
    make_resident,
    make_staff,
    new_application,
)
from tests.conftest import LoginFn, free_port

ROOT = Path(__file__).resolve().parents[2]
OLD_AGE = "BZ-MZ-001"  # 老年人优待证: its result is an e-certificate
DEPARTMENT = "谯城区民政局"


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "") -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def cert_row(cert_no: str) -> ECertificate:
    async with sessionmaker()() as s:
        row = (await s.exec(select(ECertificate).where(ECertificate.cert_no == cert_no))).one()
        return row


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["title"]), body["title"]
    return body


# -- validity -----------------------------------------------------------------------------------


def test_validity_ends_the_day_before_the_anniversary() -> None:
    assert valid_until(dt.date(2026, 12, 3), 5) == dt.date(2031, 12, 2)
    assert valid_until(dt.date(2027, 3, 1), 1) == dt.date(2028, 2, 29)
    # 29 February: its anniversary in a common year is 1 March, so the last day is 28 February.
    assert valid_until(dt.date(2028, 2, 29), 1) == dt.date(2029, 2, 28)
    assert valid_until(dt.date(2028, 2, 29), 3) == dt.date(2031, 2, 28)
    assert valid_until(dt.date(2028, 2, 29), 4) == dt.date(2032, 2, 28)
    assert valid_until(dt.date(2026, 1, 1), None) is None


# -- the library as a process of its own ---------------------------------------------------------


class LibraryProcess:
    """The data exchange sandbox (with its certificate library) in a subprocess on a fixed port, so it
    can be stopped and started again at the same address."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/sandbox/datahub"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        cmd = [sys.executable, "-m", "app_api.platform.datahub.sandbox.serve", "--port", str(self.port)]
        self.proc = await asyncio.create_subprocess_exec(
            *cmd,
            env=dict(os.environ),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with httpx.AsyncClient(timeout=2) as c:
            for _ in range(300):
                if self.proc.returncode is not None:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    pytest.fail(f"the library exited {self.proc.returncode}: {err.decode(errors='replace')}")
                try:
                    if (await c.get(f"http://127.0.0.1:{self.port}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        pytest.fail("the library did not start within 30 s")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self.proc = None

    async def record(self, cert_no: str) -> dict[str, Any] | None:
        async with httpx.AsyncClient(timeout=5) as c:
            r = await c.get(f"{self.url}/_sandbox/certificates/{cert_no}")
        if r.status_code == 404:
            return None
        data: dict[str, Any] = r.json()["data"]
        return data


@pytest.fixture
async def library(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LibraryProcess]:
    from app_api.core.jobs.settings import get_jobs_settings

    lib = LibraryProcess()
    await lib.start()
    # Short backoffs, so "down for a while" fits in a test; as many attempts as the settings allow,
    # so the compressed retry budget (up to 150 s) outlasts a library that takes long to restart on
    # a loaded machine (27 s was seen), as the real budget (hours) outlasts a real outage.
    monkeypatch.setattr(get_jobs_settings(), "retry_base_s", 0.3)
    monkeypatch.setattr(get_jobs_settings(), "retry_cap_s", 1.5)
    monkeypatch.setattr(get_jobs_settings(), "max_attempts", 100)
    try:
        yield lib
    finally:
        await lib.stop()


@pytest.fixture(scope="module")
async def catalogue(app: Any) -> None:
    from columns.gov_services import catalogue_store

    async with session_scope() as s:
        await catalogue_store.seed(s)


async def accepted_application(client: httpx.AsyncClient, r: Resident, reviewer: dict[str, str]) -> str:
    """An old-age card application, prefilled, complete, submitted and accepted by the department."""
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
        files={"file": ("photo.jpg", jpeg(), "image/jpeg")},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    resp = await client.post(
        f"{API}/applications/{app['id']}/submit", json={"delivery": "电子送达"}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text
    resp = await client.post(f"{API}/review/applications/{app['id']}/accept", headers=reviewer)
    assert resp.status_code == 200, resp.text
    return str(app["id"])


def use_library(monkeypatch: pytest.MonkeyPatch, lib: LibraryProcess) -> None:
    from app_api.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "datahub_adapter", "http")
    monkeypatch.setattr(get_settings(), "datahub_url", lib.url)


async def in_wallet(client: httpx.AsyncClient, r: Resident, cert_no: str) -> dict[str, Any] | None:
    items = (await client.get("/api/v1/me/certificates", headers=r.headers)).json()["items"]
    return next((c for c in items if c["cert_no"] == cert_no), None)


async def test_approved_certificate_reaches_the_library_and_the_wallet(
    client: httpx.AsyncClient,
    login: LoginFn,
    catalogue: None,
    library: LibraryProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app_api.core.clock import china_today

    r = await make_resident(client, login, level=2)
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    app_id = await accepted_application(client, r, reviewer)
    use_library(monkeypatch, library)

    resp = await client.post(f"{API}/review/applications/{app_id}/approve", json={}, headers=reviewer)
    assert resp.status_code == 200, resp.text
    cert_no = resp.json()["result_cert_no"]
    assert cert_no

    row = await eventually(lambda: _issued(cert_no), what="the certificate to reach the library")
    assert row.issued_on == china_today() and row.issuer == DEPARTMENT
    held = await library.record(cert_no)
    assert held is not None and held["title"] == "老年人优待证" and held["issue_requests"] == 1
    assert held["source_ref"] == app_id
    # The adapter reads it back from the library (not from our tables).
    async with session_scope() as s:
        from_library = await HttpDatahub().certificates(s, r.id_number)
    assert [c.cert_no for c in from_library if c.cert_no == cert_no] == [cert_no]
    mine = await in_wallet(client, r, cert_no)
    assert mine is not None and mine["status"] == "valid" and mine["title"] == "老年人优待证"


async def _issued(cert_no: str) -> ECertificate | None:
    row = await cert_row(cert_no)
    return row if row.state == "issued" else None


async def test_library_down_delays_the_certificate_and_it_arrives_once(
    client: httpx.AsyncClient,
    login: LoginFn,
    catalogue: None,
    library: LibraryProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = await make_resident(client, login, level=2)
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    app_id = await accepted_application(client, r, reviewer)
    use_library(monkeypatch, library)
    await library.stop()

    resp = await client.post(f"{API}/review/applications/{app_id}/approve", json={}, headers=reviewer)
    assert resp.status_code == 200, resp.text  # the approval does not wait for the library
    cert_no = resp.json()["result_cert_no"]
    row = await cert_row(cert_no)

    async def job() -> OutboxMessage:
        async with sessionmaker()() as s:
            return (
                await s.exec(
                    select(OutboxMessage).where(
                        OutboxMessage.task_name == ISSUE_TASK,
                        OutboxMessage.arguments["certificate_id"].as_string() == row.id,
                    )
                )
            ).one()

    async def failed_twice() -> bool:
        j = await job()
        return j.attempts >= 2 and j.status == "retry"

    await eventually(failed_twice, what="two failed attempts while the library is down")
    assert (await cert_row(cert_no)).state == "pending"
    assert "城市数据中心暂时无法访问" in ((await job()).last_error or "")
    pending = await in_wallet(client, r, cert_no)
    assert pending is not None and pending["status"] == "pending" and pending["status_text"] == "签发中"
    # Nothing to show or share before the library has it.
    detail = (await client.get(f"/api/v1/me/certificates/{row.id}", headers=r.headers)).json()
    assert detail["verification"] is None

    await library.start()
    await eventually(lambda: _issued(cert_no), what="the certificate after the library is back")
    j = await job()
    assert j.status in ("done", "running") and j.attempts >= 3
    held = await library.record(cert_no)
    assert held is not None and held["issue_requests"] == 1
    assert (await in_wallet(client, r, cert_no) or {}).get("status") == "valid"

    # A second run (a duplicated message, the sweep) changes nothing; an order the library already
    # holds (its answer lost on the way back) is accepted again without a second certificate.
    assert await certificates.deliver(row.id) == "already"
    async with session_scope() as s:
        await HttpDatahub().issue_certificate(s, certificates._order_of(await cert_row(cert_no)))
        listed = await HttpDatahub().certificates(s, r.id_number)
    assert [c.cert_no for c in listed].count(cert_no) == 1
    held = await library.record(cert_no)
    assert held is not None and held["issue_requests"] == 2
    async with sessionmaker()() as s:
        issued = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.action == "datahub.certificate_issued", AuditEvent.subject_id == row.id
                )
            )
        ).all()
    assert len(issued) == 1


async def test_revocation_reaches_the_library(
    client: httpx.AsyncClient,
    login: LoginFn,
    catalogue: None,
    library: LibraryProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = await make_resident(client, login, level=2)
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    app_id = await accepted_application(client, r, reviewer)
    use_library(monkeypatch, library)
    cert_no = (
        await client.post(f"{API}/review/applications/{app_id}/approve", json={}, headers=reviewer)
    ).json()["result_cert_no"]
    row = await eventually(lambda: _issued(cert_no), what="issued")

    other, _ = await make_staff(client, login, department="谯城区市场监督管理局")
    resp = await client.post(
        f"/api/v1/certificates/{row.id}/revoke", json={"reason": "信息有误"}, headers=other
    )
    problem(resp, 403, "datahub.not_issuer")
    resp = await client.post(
        f"/api/v1/certificates/{row.id}/revoke", json={"reason": "信息有误"}, headers=reviewer
    )
    assert resp.status_code == 200 and resp.json()["status"] == "revoked"

    async def revoked_there() -> bool:
        held = await library.record(cert_no)
        return bool(held and held["status"] == "revoked")

    await eventually(revoked_there, what="the revocation in the library")
    assert (await cert_row(cert_no)).revoke_sent_at is not None


async def test_sweep_issues_what_its_job_left_behind(client: httpx.AsyncClient, login: LoginFn) -> None:
    """A certificate still pending after its job gave up (or was lost) is issued by the sweep, once."""
    r = await make_resident(client, login, level=2)
    async with session_scope() as s:
        # Written as ``issue_certificate`` does, but without its job: as if the job went dead.
        row = ECertificate(
            holder_id_hash=id_hash(r.id_number),
            holder_id_enc=encrypt_str(r.id_number, aad="id_number"),
            state="pending",
            cert_type="old_age_card",
            cert_no=f"SW{utcnow():%Y%m%d%H%M%S%f}",
            title="老年人优待证",
            issuer=DEPARTMENT,
            issued_on=dt.date(2026, 12, 1),
        )
        s.add(row)
    # Young hand-offs are left to their job.
    await certificates.sweep()
    assert (await cert_row(row.cert_no)).state == "pending"
    later = utcnow() + certificates.SWEEP_AFTER + dt.timedelta(seconds=5)
    counts = await certificates.sweep(now=later)
    assert counts.get("issued", 0) >= 1 and (await cert_row(row.cert_no)).state == "issued"
    await certificates.sweep(now=later)
    async with sessionmaker()() as s:
        entries = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.action == "datahub.certificate_issued", AuditEvent.subject_id == row.id
                )
            )
        ).all()
    assert len(entries) == 1
    items = (await client.get("/api/v1/me/certificates", headers=r.headers)).json()["items"]
    assert [c["status"] for c in items if c["cert_no"] == row.cert_no] == ["valid"]


# -- the wallet (embedded default) ----------------------------------------------------------------


async def issued_certificate(r: Resident, *, valid_years: int | None = 5) -> ECertificate:
    async with session_scope() as s:
        cert = await Datahub(LocalDatahub()).issue_certificate(
            s,
            holder_id_number=r.id_number,
            cert_type="old_age_card",
            title="老年人优待证",
            issuer=DEPARTMENT,
            data={"item": "BZ-MZ-001"},
            source_ref="test",
            valid_years=valid_years,
        )
    row: ECertificate = await eventually(lambda: _issued(cert.cert_no), what="issued locally")
    return row


async def test_wallet_lists_and_shows_own_certificates_only(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    r = await make_resident(client, login, level=2)
    row = await issued_certificate(r)
    items = (await client.get("/api/v1/me/certificates", headers=r.headers)).json()["items"]
    assert {c["title"] for c in items} == {"老年人优待证", "居民身份证", "居民户口簿"}
    mine = next(c for c in items if c["id"] == row.id)
    assert mine["status"] == "valid" and mine["valid_until"] == str(valid_until(row.issued_on, 5))

    detail = (await client.get(f"/api/v1/me/certificates/{row.id}", headers=r.headers)).json()
    assert detail["data"] == {"item": "BZ-MZ-001"} and detail["shares"] == []
    assert detail["verification"]["code"].startswith(row.id + ".")

    # Another resident: not listed, not shown, not shareable; the same answer as for no certificate.
    other = await make_resident(client, login, level=2)
    assert row.id not in {
        c["id"] for c in (await client.get("/api/v1/me/certificates", headers=other.headers)).json()["items"]
    }
    for resp in (
        await client.get(f"/api/v1/me/certificates/{row.id}", headers=other.headers),
        await client.get(f"/api/v1/me/certificates/{row.id}/shares", headers=other.headers),
        await client.post(
            f"/api/v1/me/certificates/{row.id}/shares",
            json={
                "grantee_kind": "department",
                "grantee_id": DEPARTMENT,
                "purpose": "办理业务",
                "expires_at": (utcnow() + dt.timedelta(days=1)).isoformat(),
            },
            headers=other.headers,
        ),
        await client.get("/api/v1/me/certificates/nope", headers=other.headers),
    ):
        body = problem(resp, 404, "datahub.certificate_not_found")
        assert "老年人优待证" not in resp.text and row.cert_no not in str(body)
    # A resident without a verified ID number has an empty wallet.
    fresh = await login()
    assert (await client.get("/api/v1/me/certificates", headers=fresh)).json()["items"] == []


async def test_counter_verifies_a_code(client: httpx.AsyncClient, login: LoginFn) -> None:
    r = await make_resident(client, login, level=2)
    row = await issued_certificate(r)
    code = (await client.get(f"/api/v1/me/certificates/{row.id}", headers=r.headers)).json()["verification"][
        "code"
    ]

    resp = await client.get("/api/v1/certificates/verify", params={"code": code})
    assert resp.status_code == 200, resp.text
    v = resp.json()
    assert v["status"] == "valid" and v["status_text"] == "有效" and v["title"] == "老年人优待证"
    assert r.id_number not in resp.text and row.cert_no not in resp.text
    assert v["holder_id_number"].endswith(r.id_number[-4:]) and "*" in v["holder_id_number"]
    assert "data" not in v and r.name not in resp.text

    forged = code[:-1] + ("0" if code[-1] != "0" else "1")
    problem(
        await client.get("/api/v1/certificates/verify", params={"code": forged}),
        404,
        "datahub.verify_code_invalid",
    )
    problem(
        await client.get("/api/v1/certificates/verify", params={"code": "junk"}),
        404,
        "datahub.verify_code_invalid",
    )
    old = wallet.verify_code(row, now=utcnow() - dt.timedelta(hours=1))
    assert old is not None
    problem(
        await client.get("/api/v1/certificates/verify", params={"code": old[0]}),
        410,
        "datahub.verify_code_expired",
    )

    # Expired after the code was shown: the counter is told so.
    async with session_scope() as s:
        stored = await s.get(ECertificate, row.id)
        assert stored is not None
        stored.valid_until = dt.date(2020, 1, 1)
        s.add(stored)
    assert (await client.get("/api/v1/certificates/verify", params={"code": code})).json()[
        "status"
    ] == "expired"
    detail = (await client.get(f"/api/v1/me/certificates/{row.id}", headers=r.headers)).json()
    assert detail["status"] == "expired" and detail["verification"] is None

    # Revoked by its department: the counter is told so, and the revocation reaches the records.
    row2 = await issued_certificate(r)
    code2 = (await client.get(f"/api/v1/me/certificates/{row2.id}", headers=r.headers)).json()[
        "verification"
    ]["code"]
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    resp = await client.post(
        f"/api/v1/certificates/{row2.id}/revoke", json={"reason": "证照信息有误"}, headers=reviewer
    )
    assert resp.status_code == 200, resp.text
    v = (await client.get("/api/v1/certificates/verify", params={"code": code2})).json()
    assert v["status"] == "revoked" and v["status_text"] == "已撤销"
    problem(
        await client.post(
            f"/api/v1/certificates/{row2.id}/revoke", json={"reason": "证照信息有误"}, headers=r.headers
        ),
        403,
        "auth.forbidden",
    )

    async def sent() -> bool:
        return (await cert_row(row2.cert_no)).revoke_sent_at is not None

    await eventually(sent, what="the revocation job")


async def share_body(
    kind: str, grantee: str, *, days: float = 7, purpose: str = "办理贷款"
) -> dict[str, Any]:
    return {
        "grantee_kind": kind,
        "grantee_id": grantee,
        "purpose": purpose,
        "expires_at": (utcnow() + dt.timedelta(days=days)).isoformat(),
    }


async def test_share_with_a_department_and_a_bank_then_withdraw(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    r = await make_resident(client, login, level=2)
    row = await issued_certificate(r)
    reviewer, reviewer_id = await make_staff(client, login, department=DEPARTMENT)
    bank = await login(roles=["bank_officer"], institution_id="test-bank-share")
    base = f"/api/v1/me/certificates/{row.id}/shares"

    resp = await client.post(
        base, json=await share_body("department", DEPARTMENT, purpose="办理优待"), headers=r.headers
    )
    assert resp.status_code == 201, resp.text
    to_dept = resp.json()
    assert (
        to_dept["status"] == "active"
        and to_dept["grantee_id"] == DEPARTMENT
        and to_dept["purpose"] == "办理优待"
    )
    resp = await client.post(base, json=await share_body("bank", "test-bank-share"), headers=r.headers)
    assert resp.status_code == 201, resp.text
    to_bank = resp.json()

    # Recorded as consents, and in the audit chain.
    consents = (await client.get("/api/v1/me/consents", headers=r.headers)).json()["consents"]
    shared = {c["id"]: c for c in consents if c["purpose"] == wallet.SHARE_PURPOSE}
    assert set(shared) >= {to_dept["id"], to_bank["id"]}
    assert shared[to_bank["id"]]["grantee"] == "bank:test-bank-share" and shared[to_bank["id"]]["scopes"] == [
        f"certificate:{row.id}"
    ]

    async def audited() -> list[AuditEvent]:
        async with sessionmaker()() as s:
            return list(
                (
                    await s.exec(
                        select(AuditEvent).where(
                            AuditEvent.subject_id == row.id,
                            col(AuditEvent.action).like("datahub.certificate_share%"),
                        )
                    )
                ).all()
            )

    assert len(await eventually(audited, what="share audit entries")) == 2

    # The grantee's officers open it; others (another department, the resident's own token) cannot.
    resp = await client.get(f"/api/v1/certificate-shares/{to_dept['id']}", headers=reviewer)
    assert resp.status_code == 200, resp.text
    assert resp.json()["certificate"]["cert_no"] == row.cert_no and resp.json()["purpose"] == "办理优待"
    assert (await client.get(f"/api/v1/certificate-shares/{to_bank['id']}", headers=bank)).status_code == 200
    stranger, _ = await make_staff(client, login, department="谯城区市场监督管理局")
    problem(
        await client.get(f"/api/v1/certificate-shares/{to_dept['id']}", headers=stranger),
        404,
        "datahub.share_not_found",
    )
    problem(
        await client.get(f"/api/v1/certificate-shares/{to_dept['id']}", headers=bank),
        404,
        "datahub.share_not_found",
    )
    problem(
        await client.get(f"/api/v1/certificate-shares/{to_dept['id']}", headers=r.headers),
        403,
        "auth.forbidden",
    )
    # The resident sees who read it.
    reads = (await client.get("/api/v1/me/data-access", headers=r.headers)).json()["items"]
    assert any(
        x["purpose"] == wallet.SHARE_PURPOSE and x["consent_id"] == to_dept["id"] and not x["by_self"]
        for x in reads
    )

    # Withdrawn: the department can no longer open it; the list shows it withdrawn.
    resp = await client.delete(f"{base}/{to_dept['id']}", headers=r.headers)
    assert resp.status_code == 200 and resp.json()["status"] == "revoked"
    problem(
        await client.get(f"/api/v1/certificate-shares/{to_dept['id']}", headers=reviewer),
        410,
        "datahub.share_revoked",
    )
    listed = {s["id"]: s["status"] for s in (await client.get(base, headers=r.headers)).json()["items"]}
    assert listed == {to_dept["id"]: "revoked", to_bank["id"]: "active"}
    detail = (await client.get(f"/api/v1/me/certificates/{row.id}", headers=r.headers)).json()
    assert {s["id"] for s in detail["shares"]} == set(listed)
    chain = await eventually(lambda: _at_least(audited, 5), what="reads and withdrawal audited")
    assert sorted(e.action for e in chain) == [
        "datahub.certificate_share_read",
        "datahub.certificate_share_read",
        "datahub.certificate_share_withdrawn",
        "datahub.certificate_shared",
        "datahub.certificate_shared",
    ]
    assert reviewer_id


async def _at_least(f: Callable[[], Awaitable[list[AuditEvent]]], n: int) -> list[AuditEvent] | None:
    rows = await f()
    return rows if len(rows) >= n else None


async def test_share_bad_input(client: httpx.AsyncClient, login: LoginFn) -> None:
    r = await make_resident(client, login, level=2)
    row = await issued_certificate(r)
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    base = f"/api/v1/me/certificates/{row.id}/shares"

    problem(
        await client.post(base, json=await share_body("department", "不存在的局"), headers=r.headers),
        422,
        "datahub.unknown_grantee",
    )
    problem(
        await client.post(base, json=await share_body("bank", DEPARTMENT), headers=r.headers),
        422,
        "datahub.unknown_grantee",
    )
    problem(
        await client.post(base, json=await share_body("department", DEPARTMENT, days=-1), headers=r.headers),
        422,
        "datahub.share_expiry_invalid",
    )
    problem(
        await client.post(base, json=await share_body("department", DEPARTMENT, days=400), headers=r.headers),
        422,
        "datahub.share_expiry_invalid",
    )
    problem(
        await client.post(
            base,
            json={**await share_body("department", DEPARTMENT), "grantee_kind": "friend"},
            headers=r.headers,
        ),
        422,
        "app.validation_failed",
    )
    async with sessionmaker()() as s:
        assert not await wallet.shares_of(s, r.account_id, row.id)  # nothing half-written

    # An expired share: the grantee is told it expired; withdrawing it is refused the same way.
    share = (
        await client.post(base, json=await share_body("department", DEPARTMENT), headers=r.headers)
    ).json()
    from app_api.platform.consent.models import Consent

    async with session_scope() as s:
        c = await s.get(Consent, share["id"])
        assert c is not None
        c.expires_at = utcnow() - dt.timedelta(minutes=1)
        s.add(c)
    problem(
        await client.get(f"/api/v1/certificate-shares/{share['id']}", headers=reviewer),
        410,
        "datahub.share_expired",
    )
    problem(await client.delete(f"{base}/{share['id']}", headers=r.headers), 410, "datahub.share_expired")
    problem(await client.delete(f"{base}/nope", headers=r.headers), 404, "datahub.share_not_found")

    # A revoked certificate is not shared, and a live share of it stops working.
    live = (
        await client.post(base, json=await share_body("department", DEPARTMENT), headers=r.headers)
    ).json()
    assert (
        await client.post(
            f"/api/v1/certificates/{row.id}/revoke", json={"reason": "已注销"}, headers=reviewer
        )
    ).status_code == 200
    problem(
        await client.post(base, json=await share_body("department", DEPARTMENT), headers=r.headers),
        409,
        "datahub.certificate_revoked",
    )
    problem(
        await client.get(f"/api/v1/certificate-shares/{live['id']}", headers=reviewer),
        409,
        "datahub.certificate_revoked",
    )

    # A certificate still on its way to the library is not shared yet.
    async with session_scope() as s:
        pending = ECertificate(
            holder_id_hash=row.holder_id_hash,
            holder_id_enc=encrypt_str(r.id_number, aad="id_number"),
            state="pending",
            cert_type="x",
            cert_no=f"P{row.id[:12]}",
            title="测试证照",
            issuer=DEPARTMENT,
            issued_on=dt.date(2026, 1, 1),
        )
        s.add(pending)
        pid = pending.id
    problem(
        await client.post(
            f"/api/v1/me/certificates/{pid}/shares",
            json=await share_body("department", DEPARTMENT),
            headers=r.headers,
        ),
        409,
        "datahub.certificate_pending",
    )
