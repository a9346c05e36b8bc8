"""Catalogue administration (files, versions), ratings with follow-up, and the assistant's capability."""

from __future__ import annotations

import csv
import io

import httpx
from openpyxl import load_workbook

from tests.columns.gov_services.conftest import API, make_resident, make_staff, new_application
from tests.conftest import LoginFn

LEGAL_AID = "BZ-SF-001"  # 法律援助申请, 亳州市司法局


async def _count_items() -> int:
    from app_api.core.db import session_scope
    from columns.gov_services import catalogue_store

    async with session_scope() as s:
        return len(await catalogue_store.current_items(s))


async def test_export_and_bad_import_changes_nothing(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    admin = await login(roles=["admin"])
    resp = await client.get(f"{API}/admin/catalogue/export", params={"format": "xlsx"}, headers=admin)
    assert resp.status_code == 200
    ws = load_workbook(io.BytesIO(resp.content)).active
    assert ws.max_row - 1 == await _count_items() >= 53

    resp = await client.get(f"{API}/admin/catalogue/export", params={"format": "csv"}, headers=admin)
    rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    header = rows[0]
    rows[1][header.index("实施部门")] = "亳州市不存在局"
    rows[2][header.index("事项编码")] = rows[3][header.index("事项编码")]  # duplicate code
    rows[4][header.index("事项名称")] = "改过的名字，但本文件有错，不能导入"
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    before = await _count_items()
    resp = await client.post(
        f"{API}/admin/catalogue/import",
        files={"file": ("目录.csv", out.getvalue().encode(), "text/csv")},
        headers=admin,
    )
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["code"] == "gov_services.catalogue_file_invalid"
    assert {(e["row"], e["column"]) for e in body["errors"]} >= {(2, "实施部门"), (4, "事项编码")}
    assert await _count_items() == before
    hits = (await client.get(f"{API}/items", params={"q": "改过的名字"})).json()["items"]
    assert hits == []
    # Not a spreadsheet at all.
    resp = await client.post(
        f"{API}/admin/catalogue/import",
        files={"file": ("目录.xlsx", b"%PDF-1.4 no", "application/pdf")},
        headers=admin,
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["message"] == "不是有效的 XLSX 文件"
    # Only administrators.
    r = await make_resident(client, login, level=1)
    resp = await client.post(
        f"{API}/admin/catalogue/import", files={"file": ("x.csv", b"a,b", "text/csv")}, headers=r.headers
    )
    assert resp.status_code == 403


async def test_edits_make_versions_and_applications_keep_theirs(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    admin = await login(roles=["admin"])
    r = await make_resident(client, login, level=2)
    old = await new_application(client, r, LEGAL_AID)
    guide = (await client.get(f"{API}/items/{LEGAL_AID}")).json()
    v1 = guide["version"]
    edited = {k: v for k, v in guide.items() if k not in ("version", "fully_online", "department_info")}
    edited["promised_days"] = 6
    edited["summary"] = guide["summary"] + "（2026年12月起承诺时限调整为6个工作日）"
    resp = await client.put(f"{API}/admin/items/{LEGAL_AID}", json=edited, headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == v1 + 1
    # A rule-breaking edit is refused and leaves the version alone.
    bad = {**edited, "promised_days": 99}
    resp = await client.put(f"{API}/admin/items/{LEGAL_AID}", json=bad, headers=admin)
    assert resp.status_code == 422
    assert (await client.get(f"{API}/items/{LEGAL_AID}")).json()["version"] == v1 + 1

    new = await new_application(client, r, LEGAL_AID)
    assert new["item_version"] == v1 + 1 and new["limit_days"] == 6
    kept = (await client.get(f"{API}/applications/{old['id']}", headers=r.headers)).json()
    assert kept["item_version"] == v1 and kept["limit_days"] == 5

    # Importing the exported file again changes nothing; importing a changed row makes one version.
    export = await client.get(f"{API}/admin/catalogue/export", params={"format": "xlsx"}, headers=admin)
    resp = await client.post(
        f"{API}/admin/catalogue/import",
        files={"file": ("目录.xlsx", export.content, "application/octet-stream")},
        headers=admin,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["imported"]["created"] == 0 and resp.json()["imported"]["updated"] == 0


async def test_bad_rating_opens_a_follow_up_the_department_answers(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from tests.columns.gov_services.test_gov_applications import _submitted

    r = await make_resident(client, login, level=2)
    app_id = await _submitted(client, r)
    reviewer, _ = await make_staff(client, login, department="谯城区民政局")
    early = await client.post(f"{API}/applications/{app_id}/rating", json={"score": 1}, headers=r.headers)
    assert early.status_code == 409  # not decided yet
    await client.post(f"{API}/review/applications/{app_id}/accept", headers=reviewer)
    await client.post(f"{API}/review/applications/{app_id}/approve", json={}, headers=reviewer)
    # The department's 好差评 figures as supervision reads them, before this rating and after (an
    # administrator reads them here: a new supervisor of the department would receive other tests'
    # warnings).
    admin = await login(roles=["admin"])

    async def figures_seen() -> dict[str, int]:
        resp = await client.get(f"{API}/ratings/summary", params={"by": "department"}, headers=admin)
        assert resp.status_code == 200, resp.text
        row = next((f for f in resp.json()["figures"] if f["department"] == "谯城区民政局"), None)
        return {k: row[k] if row else 0 for k in ("count", "bad", "open_follow_ups")}

    before = await figures_seen()
    resp = await client.post(
        f"{API}/applications/{app_id}/rating", json={"score": 1, "text": "等了很久才受理"}, headers=r.headers
    )
    assert resp.status_code == 201 and resp.json()["follow_up"] == "open"
    rating_id = resp.json()["id"]
    assert await figures_seen() == {
        "count": before["count"] + 1,
        "bad": before["bad"] + 1,
        "open_follow_ups": before["open_follow_ups"] + 1,
    }
    assert (
        await client.post(f"{API}/applications/{app_id}/rating", json={"score": 0}, headers=r.headers)
    ).status_code == 422

    open_ = (await client.get(f"{API}/review/follow-ups", headers=reviewer)).json()["ratings"]
    assert rating_id in [x["id"] for x in open_]
    other, _ = await make_staff(client, login, department="亳州市司法局")
    resp = await client.post(
        f"{API}/review/ratings/{rating_id}/answer", json={"answer": "已回访"}, headers=other
    )
    assert resp.status_code == 403
    resp = await client.post(
        f"{API}/review/ratings/{rating_id}/answer",
        json={"answer": "已电话回访，受理窗口已增加人手"},
        headers=reviewer,
    )
    assert resp.status_code == 200 and resp.json()["follow_up"] == "answered"
    texts = " ".join(
        n["text"] for n in (await client.get("/api/v1/me/notifications", headers=r.headers)).json()["items"]
    )
    assert "已电话回访" in texts
    # Answered: the bad rating stays in the figures, its follow-up is no longer open.
    assert await figures_seen() == {
        "count": before["count"] + 1,
        "bad": before["bad"] + 1,
        "open_follow_ups": before["open_follow_ups"],
    }


async def test_service_catalogue_capability_for_the_assistant(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from app_api.platform.capabilities import ServiceCatalogue, lookup
    from columns.gov_services.capability import GovServiceCatalogue

    cap = lookup(ServiceCatalogue)
    assert isinstance(cap, GovServiceCatalogue)
    fit = await cap.fits("我退休了想把公积金取出来")
    assert fit["code"] == "BZ-GJJ-003" and fit["fully_online"] is True
    assert fit["start"]["deep_link"].endswith("item=BZ-GJJ-003")
    assert await cap.fits("今天天气怎么样") is None
    transfer = await cap.item("BZ-ZG-002")
    assert transfer["fee"]["text"] == "80.00元" and transfer["fee"]["fee_fen"] == 8000
    where = await cap.where_to_go("BZ-MZ-003")
    assert where["fully_online"] is False and "婚姻登记处" in where["where_to_go"]
    assert (await cap.time_limit("BZ-GA-001")) == {"promised_days": 1, "statutory_days": 3}
    hits = await cap.search("lnz")
    assert hits[0]["code"] == "BZ-MZ-001"
    r = await make_resident(client, login, level=2)
    other = await make_resident(client, login, level=2)
    app = await new_application(client, r, "BZ-MZ-001")
    mine = await cap.my_applications(r.account_id)
    assert [a["id"] for a in mine] == [app["id"]] and mine[0]["status_name"] == "草稿"
    assert await cap.my_applications(other.account_id) == []


async def test_agent_files_for_a_resident_with_the_result_posted_to_the_station(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    import pytest

    from app_api.core.db import session_scope
    from app_api.platform.capabilities import ServiceCatalogue, lookup
    from columns.gov_services.errors import MaterialsMissing

    cap = lookup(ServiceCatalogue)
    assert cap is not None
    r = await make_resident(
        client, login, level=1
    )  # a villager without face checks: the agent checks in person
    station = {
        "method": "station",
        "station_id": "changshu",
        "station_name": "常熟联络站",
        "address": "江苏省常熟市海虞北路1号",
    }
    common = {
        "resident_id": r.account_id,
        "agent_id": "agent-1",
        "station_id": "changshu",
        "mandate_id": "mandate-1",
        "item_code": "BZ-MZ-001",
        "delivery": station,
    }
    with pytest.raises(MaterialsMissing):  # the application form needs the address
        async with session_scope() as s:
            await cap.file_on_behalf(s, form={"备注": "村代办点代办"}, client_key="agent-key-0001", **common)
    form = {"person.address": "安徽省亳州市谯城区古井镇某村", "备注": "村代办点代办"}
    async with session_scope() as s:
        first = await cap.file_on_behalf(s, form=form, client_key="agent-key-0002", **common)
    async with session_scope() as s:
        again = await cap.file_on_behalf(s, form=form, client_key="agent-key-0002", **common)
    assert first["status"] == "submitted" and first["delivery"] == "免费邮寄"
    assert again["id"] == first["id"]
    detail = (await client.get(f"{API}/applications/{first['id']}", headers=r.headers)).json()
    kinds = [(e["kind"], e["actor_role"]) for e in detail["timeline"]]
    assert ("agent_filed", "agent") in kinds and ("submitted", "agent") in kinds
    fields = {f["key"]: f["value"] for f in detail["form"]["fields"]}
    assert fields["person.address"] == "安徽省亳州市谯城区古井镇某村" and fields["person.gender"] in (
        "男",
        "女",
    )
    assert detail["missing_materials"] == []


async def test_the_same_filing_sent_twice_at_once_gives_one_application(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, is_postgres: bool
) -> None:
    """An agent's device resends a filing while the first is still running (each in a savepoint,
    as the agents' batch endpoint files them): one application, both answers name it.

    PostgreSQL only: SQLite has one writer, and ``app_api.platform.agents`` takes its write lock up front.
    """
    import asyncio

    import pytest

    if not is_postgres:
        pytest.skip("two concurrent writers need PostgreSQL")

    from app_api.core.db import savepoint, session_scope
    from app_api.platform.capabilities import ServiceCatalogue, lookup

    cap = lookup(ServiceCatalogue)
    assert cap is not None
    r = await make_resident(client, login, level=1)
    form = {"person.address": "安徽省亳州市谯城区古井镇某村"}
    common = {
        "resident_id": r.account_id,
        "agent_id": "agent-1",
        "station_id": "changshu",
        "mandate_id": "mandate-1",
        "item_code": "BZ-MZ-001",
        "delivery": None,
        "form": form,
        "client_key": "agent-race-" + r.account_id[:8],
    }

    async def file() -> dict:
        async with session_scope() as s, savepoint(s):
            return await cap.file_on_behalf(s, **common)

    first, second = await asyncio.gather(file(), file())
    assert first["id"] == second["id"]
    mine = await cap.my_applications(r.account_id)
    assert [a["id"] for a in mine] == [first["id"]]


async def test_agent_uploads_a_material_for_the_residents_own_application_only(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    import pytest

    from app_api.core.db import session_scope
    from app_api.platform.capabilities import ServiceCatalogue, lookup
    from columns.gov_services.errors import ApplicationNotFound, UploadRejected
    from tests.columns.gov_services.conftest import jpeg

    cap = lookup(ServiceCatalogue)
    assert cap is not None
    r = await make_resident(client, login, level=2)
    other = await make_resident(client, login, level=2)
    draft = await new_application(client, r, "BZ-MZ-001")
    common = {
        "agent_id": "agent-1",
        "station_id": "changshu",
        "mandate_id": "mandate-1",
        "application_id": draft["id"],
        "material": "近期免冠彩色证件照片",
        "filename": "photo.jpg",
        "content_type": "image/jpeg",
    }
    async with session_scope() as s:
        done = await cap.upload_on_behalf(s, resident_id=r.account_id, data=jpeg(), **common)
    assert done["kind"] == "jpeg" and done["material"] == "近期免冠彩色证件照片"
    with pytest.raises(ApplicationNotFound):  # not this resident's application
        async with session_scope() as s:
            await cap.upload_on_behalf(s, resident_id=other.account_id, data=jpeg(), **common)
    with pytest.raises(UploadRejected):  # checked by content like the resident's own upload
        async with session_scope() as s:
            await cap.upload_on_behalf(s, resident_id=r.account_id, data=b"not an image", **common)
    detail = (await client.get(f"{API}/applications/{draft['id']}", headers=r.headers)).json()
    assert [u["id"] for u in detail["uploads"]] == [done["id"]]
    assert ("uploaded", "agent") in [(e["kind"], e["actor_role"]) for e in detail["timeline"]]
