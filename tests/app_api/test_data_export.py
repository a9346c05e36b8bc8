"""A resident's export of all their data (PIPL right of access): every table tied to an account is in
it or listed as excluded with a reason; the rows are the resident's own; one export at a time."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import SQLModel, select

from app_api.core.db import sessionmaker
from app_api.core.redis import get_redis
from app_api.platform.accounts import export
from app_api.platform.audit.models import AuditEvent
from tests.app_api.agents_helpers import gov_catalogue  # noqa: F401  (an autouse fixture)
from tests.columns.gov_services.conftest import API, make_resident, new_application
from tests.conftest import LoginFn

# Independent of the export's own rules: any column that looks like it names a person's account.
TIED = re.compile(
    r"(^|_)(account|resident|applicant|holder|payer|user|owner|actor|agent|reviewer|officer|subject)"
    r"(_account)?_(id|hash)$|_by$|^id_number_hash$"
)
CJK = re.compile(r"[\u4e00-\u9fff]")


def _tied(table: sa.Table) -> list[str]:
    return [
        c.name
        for c in table.columns
        if TIED.search(c.name) or any(fk.column.table.name == "app_account" for fk in c.foreign_keys)
    ]


async def test_every_table_tied_to_an_account_is_exported_or_excluded_with_a_reason(app: Any) -> None:
    tables = SQLModel.metadata.tables
    exported = export.exported_tables()
    tied = {name: _tied(t) for name, t in tables.items() if _tied(t)}
    # The walk sees the columns' tables too (loaded through their entry points).
    assert {"app_account", "app_consent", "gov_services_application", "payments_order"} <= set(tied)
    missing = {n: c for n, c in tied.items() if n not in exported and n not in export.EXCLUDED}
    assert not missing, f"tables tied to an account neither exported nor excluded: {missing}"
    assert not set(exported) & set(export.EXCLUDED)
    for name, reason in export.EXCLUDED.items():
        assert name in tables, f"excluded table {name} does not exist"
        assert CJK.search(reason), reason


async def test_every_encrypted_column_of_an_exported_table_says_how_to_open_it_or_why_not(app: Any) -> None:
    """A column of ciphertext with no declared AAD would be silently missing from the resident's
    copy (as the applications' forms, the utilities holder names and the loans' shared data were)."""
    undeclared = [
        f"{name}.{c.name}"
        for name in export.exported_tables()
        for c in SQLModel.metadata.tables[name].columns
        if isinstance(c.type, sa.LargeBinary) and "aad" not in c.info
    ]
    assert not undeclared, f"encrypted columns without encrypted_column(...): {undeclared}"
    for column, reason in export.encrypted_columns_not_exported().items():
        assert CJK.search(reason), (column, reason)


async def test_the_export_holds_the_residents_rows_and_no_one_elses(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    r = await make_resident(client, login)
    other = await make_resident(client, login)
    app = await new_application(client, r, "BZ-MZ-001")
    resp = await client.post(
        f"{API}/applications/{app['id']}/prefill", json={"groups": ["person"]}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text

    resp = await client.get("/api/v1/me/export", headers=r.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    t = body["tables"]
    assert body["account_id"] == r.account_id
    (account,) = t["app_account"]
    assert account["real_name"] == r.name and account["id_number"] == r.id_number
    assert [a["id"] for a in t["gov_services_application"]] == [app["id"]]
    # Encrypted fields come decrypted as their model declares: the application's prefilled form.
    (filled,) = t["gov_services_application"]
    assert filled["form"]["person.name"] == r.name and filled["form"]["person.id_number"] == r.id_number
    # Rows that belong to the application come with it (its timeline).
    assert {e["application_id"] for e in t["gov_services_event"]} == {app["id"]}
    assert any(c["purpose"] == "gov_services.prefill" for c in t["app_consent"])
    assert any(x["purpose"] == "gov_services.prefill" for x in t["app_datahub_access"])
    (person,) = t["app_datahub_person"]
    assert person["name"] == r.name and person["address"].startswith("安徽省亳州市")
    assert {c["title"] for c in t["app_datahub_certificate"]} == {"居民身份证", "居民户口簿"}
    # Lookup keys are not data: no hash is exported.
    assert not any(k.endswith("_hash") for rows in t.values() for row in rows for k in row)
    assert {x["table"] for x in body["excluded"]} == set(export.EXCLUDED) | set(
        export.encrypted_columns_not_exported()
    )
    # Nothing of the other resident.
    leaks = {n for n, rows in t.items() if other.account_id in str(rows) or other.id_number in str(rows)}
    assert not leaks, {n: t[n] for n in leaks}

    theirs = (await client.get("/api/v1/me/export", headers=other.headers)).json()
    assert app["id"] not in str(theirs) and r.id_number not in str(theirs)

    page = await client.get("/api/v1/me/export", params={"format": "html"}, headers=r.headers)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "我的数据导出" in page.text and r.name in page.text and "未导出的数据及原因" in page.text

    async with sessionmaker()() as s:
        audited = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.action == "accounts.data_exported", AuditEvent.subject_id == r.account_id
                )
            )
        ).all()
    assert len(audited) == 2
    assert audited[0].data["rows"]["gov_services_application"] == 1


async def test_an_export_requested_twice_at_once_runs_once(client: httpx.AsyncClient, login: LoginFn) -> None:
    r = await make_resident(client, login)
    redis = await get_redis()
    # While one export is being built, another is refused with a clear reason...
    await redis.set(f"accounts:export:{r.account_id}", b"1", ex=60)
    try:
        resp = await client.get("/api/v1/me/export", headers=r.headers)
        assert resp.status_code == 409, resp.text
        assert resp.json()["code"] == "accounts.export_in_progress"
        assert resp.json()["title"] == "您的数据导出正在进行中，请稍后再试"
    finally:
        await redis.delete(f"accounts:export:{r.account_id}")
    # ...and two sent together: never two exports at the same time, never an error other than that.
    results = await asyncio.gather(*(client.get("/api/v1/me/export", headers=r.headers) for _ in range(3)))
    codes = sorted(x.status_code for x in results)
    assert codes[0] == 200 and set(codes) <= {200, 409}, [x.text for x in results]
    async with sessionmaker()() as s:
        n = len(
            (
                await s.exec(
                    select(AuditEvent).where(
                        AuditEvent.action == "accounts.data_exported", AuditEvent.subject_id == r.account_id
                    )
                )
            ).all()
        )
    assert n == codes.count(200)
    # The lock is gone once the export is done: the next request is served.
    assert (await client.get("/api/v1/me/export", headers=r.headers)).status_code == 200
