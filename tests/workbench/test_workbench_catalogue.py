"""The catalogue editors' screens (issue 15, item 3) and the reviewers' sorted queue and field sources
(item 1): an import with bad rows lists every row's error and imports nothing; an editor edits an item,
sees field errors beside the fields, previews, publishes a version (the residents' guide changes),
compares versions; a double-submitted form publishes once and a stale form is refused; exports come
back in the import's layout; other roles get the 403 page. The queue sorts by time left, submission
and item; the application page says where each field came from. One browser test (Chromium): an
editor publishing a version and the resident's guide changing.

Every test works on items of its own (a fresh department and item codes), so the shared catalogue
the other tests read is never changed. ``WORKBENCH_SCREENSHOTS=1`` saves the screens into
``docs/workbench/catalogue-*.png``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets
from typing import Any

import httpx
import pytest

from app_api.platform.workbench import new_idem_key
from tests.columns.gov_services.conftest import (  # noqa: F401  (gov_catalogue: a fixture)
    API,
    gov_catalogue,
    make_resident,
    make_staff,
)
from tests.conftest import LoginFn
from tests.workbench.test_workbench import CHROMIUM, browser_page, log_in, shot, staff

WB = f"{API}/workbench"
CAT = f"{WB}/catalogue"
TEMPLATE = "BZ-MZ-001"
pytestmark = pytest.mark.usefixtures("gov_catalogue")


async def fresh_department() -> str:
    from app_api.core.db import session_scope
    from columns.gov_services import catalogue_store
    from columns.gov_services.catalogue import Department

    name = f"工作台测试局{secrets.token_hex(3)}"
    async with session_scope() as s:
        await catalogue_store.upsert_departments(
            s,
            [
                Department(
                    name=name,
                    level="县区",
                    address="谯城区政务服务中心测试窗口",
                    phone="0558-5599001",
                    supervisor_phone="0558-5599009",
                )
            ],
        )
    return name


def item_data(department: str, **changes: Any) -> dict[str, Any]:
    """A valid item of ``department`` modelled on 老年人优待证 (one material by e-certificate and
    record fields, no rules, fully online, electronic result), with ``changes``."""
    from columns.gov_services.catalogue import seed_catalogue

    base = seed_catalogue().item(TEMPLATE)
    assert base is not None
    data = base.model_dump(mode="json")
    data.update(
        code=f"WB-{secrets.token_hex(4).upper()}",
        name=f"工作台测试优待证{secrets.token_hex(2)}",
        department=department,
        materials=data["materials"][:1],
        rules=[],
        delivery=["电子送达"],
        result={"name": "老年人优待证", "ecert": None, "paper": False},
        synonyms=[],
        keywords=[],
    )
    data.update(changes)
    return data


def csv_of(rows: list[dict[str, Any]]) -> bytes:
    """Items as the catalogue's CSV (the exporter's layout); rows may be invalid on purpose."""
    from columns.gov_services import catalogue_io
    from columns.gov_services.catalogue import CatalogueItem

    out = io.StringIO(newline="")
    w = csv.writer(out)
    w.writerow([h for _, h in catalogue_io.COLUMNS])
    for data in rows:
        bad = data.pop("_bad", {})
        cells = catalogue_io.item_to_row(CatalogueItem.model_validate(data))
        cells.update(bad)
        w.writerow(cells.values())
    return out.getvalue().encode("utf-8-sig")


async def import_csv(
    client: httpx.AsyncClient, admin: dict[str, str], body: bytes, key: str = ""
) -> httpx.Response:
    return await client.post(
        f"{CAT}/import",
        data={"idem": key or new_idem_key()},
        files={"file": ("事项目录.csv", body, "text/csv")},
        headers=admin,
    )


def form_values(page: str) -> dict[str, Any]:
    """The edit form's fields as the browser would send them (checkboxes: the checked ones)."""
    values: dict[str, Any] = {}
    for name, value in re.findall(r'<input id="f-[a-z_]+" name="([a-z_]+)" value="([^"]*)"', page):
        values[name] = value
    for name, body in re.findall(
        r'<textarea id="f-[a-z_]+" name="([a-z_]+)"[^>]*>(.*?)</textarea>', page, re.S
    ):
        values[name] = body
    for name, body in re.findall(r'<select id="f-[a-z_]+" name="([a-z_]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', body)
        values[name] = chosen.group(1) if chosen else ""
    for name, value in re.findall(r'<input type="checkbox" name="([a-z_]+)" value="([^"]*)" checked>', page):
        values.setdefault(name, []).append(value)
    import html

    return {
        k: [html.unescape(x) for x in v] if isinstance(v, list) else html.unescape(v)
        for k, v in values.items()
    }


async def guide(client: httpx.AsyncClient, code: str) -> dict[str, Any]:
    r = await client.get(f"{API}/items/{code}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_an_import_with_bad_rows_lists_each_and_imports_nothing_then_imports_once(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    admin = await login(roles=["admin"])
    dept = await fresh_department()
    good, bad = item_data(dept), item_data(dept)
    bad["_bad"] = {"承诺时限（工作日）": "三天", "实施部门": "不存在的局"}
    body = csv_of([good, bad])
    resp = await import_csv(client, admin, body)
    assert resp.status_code == 422, resp.text
    errors = re.search(r'<table id="import-errors".*?</table>', resp.text, re.S)
    assert errors, resp.text
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", errors.group(0))]
    assert ["3", "承诺时限（工作日）", "应为整数，实际为“三天”"] in rows, rows
    assert "未导入任何事项" in resp.text and 'aria-invalid="true"' in resp.text
    # All or nothing: the good row was not imported either.
    assert (await client.get(f"{API}/items/{good['code']}")).status_code == 404

    # Not a catalogue file: said beside the file field.
    resp = await client.post(
        f"{CAT}/import",
        data={"idem": new_idem_key()},
        files={"file": ("目录.txt", b"x", "text/plain")},
        headers=admin,
    )
    assert resp.status_code == 422 and "仅支持 .xlsx 或 .csv 文件" in resp.text
    resp = await client.post(f"{CAT}/import", data={"idem": new_idem_key()}, headers=admin)
    assert resp.status_code == 422 and "请选择要导入的" in resp.text

    fixed = item_data(dept)
    key = new_idem_key()
    body = csv_of([dict(good), fixed])
    for _ in range(2):  # the same form twice: one import
        resp = await import_csv(client, admin, body, key)
        assert resp.status_code == 303, resp.text
        assert resp.headers["location"] == f"{CAT}?imported=2-0-0"
    page = await client.get(resp.headers["location"], headers=admin)
    assert "新增 2 项" in page.text
    history = await client.get(f"{CAT}/items/{fixed['code']}/versions", headers=admin)
    assert history.text.count('<tr data-version="') == 1
    assert (await guide(client, fixed["code"]))["name"] == fixed["name"]

    # The export is the import's layout: imported again, nothing changes.
    resp = await client.get(f"{CAT}/export", params={"format": "csv"}, headers=admin)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    assert fixed["code"] in resp.content.decode("utf-8-sig")
    xlsx = await client.get(f"{CAT}/export", params={"format": "xlsx"}, headers=admin)
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    resp = await client.post(
        f"{CAT}/import",
        data={"idem": new_idem_key()},
        files={"file": ("catalogue.xlsx", xlsx.content, "application/octet-stream")},
        headers=admin,
    )
    assert resp.status_code == 303 and re.search(r"imported=0-0-\d+$", resp.headers["location"]), resp.text


async def test_an_editor_edits_previews_publishes_and_compares_versions(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    admin = await login(roles=["admin"])
    dept = await fresh_department()
    data = item_data(dept)
    code = data["code"]
    assert (await import_csv(client, admin, csv_of([data]))).status_code == 303

    # Found by search, with the department filter.
    page = await client.get(CAT, params={"q": data["name"], "department": dept}, headers=admin)
    assert page.status_code == 200 and f'<tr data-code="{code}">' in page.text
    page = await client.get(CAT, params={"department": dept}, headers=admin)
    assert f'<tr data-code="{code}">' in page.text and 'id="total">1<' in page.text

    page = await client.get(f"{CAT}/items/{code}", headers=admin)
    assert page.status_code == 200, page.text
    form = form_values(page.text)
    assert form["name"] == data["name"] and form["promised_days"] == "3" and form["identity_level"] == "2"
    assert form["delivery"] == ["电子送达"] and form["applicants"] == ["个人"]
    assert "回填=person.name,person.id_number" in form["materials"]
    base = {"idem": new_idem_key(), "base_version": "1", **form}

    # Bad input: each message beside its field, nothing published.
    bad = {
        **base,
        "promised_days": "十",
        "rules": '{"id": "age", "kind": "age_at_least"',
        "contact_phone": "123",
        "delivery": [],
    }
    resp = await client.post(f"{CAT}/items/{code}", data=bad, headers=admin)
    assert resp.status_code == 422, resp.text
    assert re.search(r'id="e-promised_days" role="alert">应为整数，实际为“十”<', resp.text), resp.text
    assert re.search(r'id="e-rules" role="alert">第1条规则不是有效的 JSON', resp.text)
    assert (
        'id="f-promised_days" name="promised_days" value="十" inputmode="numeric" aria-invalid="true"'
        in resp.text
    )
    # The whole-item checks too: e.g. the steps' days over the promised limit.
    resp = await client.post(
        f"{CAT}/items/{code}", data={**base, "idem": new_idem_key(), "promised_days": "1"}, headers=admin
    )
    assert resp.status_code == 422 and "各环节时限之和超过承诺时限" in resp.text, resp.text
    resp = await client.post(
        f"{CAT}/items/{code}", data={**base, "idem": new_idem_key(), "delivery": []}, headers=admin
    )
    assert resp.status_code == 422 and 'id="e-delivery"' in resp.text
    assert (await guide(client, code))["version"] == 1

    changed = {
        **base,
        "promised_days": "5",
        "legal_basis": form["legal_basis"] + "\n《亳州市老年人优待办法》",
        "where_to_go": "谯城区政务服务中心二楼民政窗口",
        "identity_level": "3",
        "fee_yuan": "10",
        "fee_basis": "皖价费〔2026〕1号",
        "fee": '{"kind": "fixed", "amount_fen": 1000, "charge_at": "submit"}',
        "rules": '{"id": "age", "kind": "age_at_least", "value": 60, "condition": 1, "explain": "年满60周岁"}',
    }
    # 预览改动: the difference, nothing saved.
    resp = await client.post(f"{CAT}/items/{code}", data={**changed, "step": "preview"}, headers=admin)
    assert resp.status_code == 200, resp.text
    preview = re.search(r'<section class="card" id="preview".*?</section>', resp.text, re.S)
    assert preview and "+ 《亳州市老年人优待办法》" in preview.group(0)
    assert '<div class="diff" data-field="承诺时限（工作日）">' in preview.group(0)
    assert (await guide(client, code))["version"] == 1

    for _ in range(2):  # sent twice: one version
        resp = await client.post(f"{CAT}/items/{code}", data=changed, headers=admin)
        assert resp.status_code == 303, resp.text
        assert resp.headers["location"] == f"{CAT}/items/{code}/versions?published=2"
    now = await guide(client, code)
    assert now["version"] == 2 and now["promised_days"] == 5 and now["identity_level"] == 3
    assert now["legal_basis"][-1] == "《亳州市老年人优待办法》" and now["fee"]["amount_fen"] == 1000
    assert now["rules"][0]["kind"] == "age_at_least"

    # A form opened on version 1 and sent with other changes: refused, version 2 stays.
    stale = {**base, "idem": new_idem_key(), "summary": "另一位编辑的修改"}
    resp = await client.post(f"{CAT}/items/{code}", data=stale, headers=admin)
    assert resp.status_code == 422 and "已被其他人修改为第 2 版" in resp.text
    # The current version sent unchanged: nothing to publish.
    page = await client.get(f"{CAT}/items/{code}", headers=admin)
    same = {"idem": new_idem_key(), "base_version": "2", **form_values(page.text)}
    resp = await client.post(f"{CAT}/items/{code}", data=same, headers=admin)
    assert resp.status_code == 422 and "内容与当前版本相同" in resp.text
    assert (await guide(client, code))["version"] == 2

    history = await client.get(f"{CAT}/items/{code}/versions", headers=admin)
    assert history.status_code == 200 and "已发布第" not in history.text
    v2 = re.search(r'<tr data-version="2">(.*?)</tr>', history.text, re.S)
    assert v2 and "承诺时限（工作日）" in v2.group(1) and "身份认证等级" in v2.group(1)
    diff = re.search(r'<section id="diff".*?</section>', history.text, re.S)
    assert diff and "- 3" in diff.group(0) and "+ 5" in diff.group(0)
    same_version = await client.get(f"{CAT}/items/{code}/versions", params={"a": 2, "b": 2}, headers=admin)
    assert "只有一个版本" in same_version.text or "内容相同" in same_version.text
    missing = await client.get(f"{CAT}/items/WB-NOPE-0000", headers=admin)
    assert missing.status_code == 404 and "没有编码为 WB-NOPE-0000 的事项" in missing.text


async def test_other_roles_get_the_403_page_and_change_nothing(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    admin = await login(roles=["admin"])
    dept = await fresh_department()
    data = item_data(dept)
    assert (await import_csv(client, admin, csv_of([data]))).status_code == 303
    reviewer, _ = await make_staff(client, login, department=dept)
    for url in (CAT, f"{CAT}/items/{data['code']}", f"{CAT}/items/{data['code']}/versions", f"{CAT}/export"):
        page = await client.get(url, headers=reviewer)
        assert page.status_code == 403 and "管理员" in page.text, url
        assert data["name"] not in page.text
    page = await client.get(f"{CAT}/items/{data['code']}", headers=admin)
    form = {"idem": new_idem_key(), "base_version": "1", **form_values(page.text), "promised_days": "5"}
    resp = await client.post(f"{CAT}/items/{data['code']}", data=form, headers=reviewer)
    assert resp.status_code == 403
    resp = await import_csv(client, reviewer, csv_of([item_data(dept)]))
    assert resp.status_code == 403
    assert (await guide(client, data["code"]))["version"] == 1
    resident = await login(level=2)
    assert (await client.get(CAT, headers=resident)).status_code in (401, 403)


async def _submitted(client: httpx.AsyncClient, login: LoginFn, code: str) -> dict[str, Any]:
    """A resident's application of ``code``: filled from the records, one field typed, submitted."""
    r = await make_resident(client, login, level=2)
    resp = await client.post(
        f"{API}/applications", json={"item_code": code, "client_key": secrets.token_hex(8)}, headers=r.headers
    )
    assert resp.status_code == 201, resp.text
    app_id = resp.json()["id"]
    resp = await client.post(
        f"{API}/applications/{app_id}/prefill", json={"groups": ["person", "certificate"]}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text
    resp = await client.put(
        f"{API}/applications/{app_id}/fields",
        json={"fields": {"contact.remark": "上午联系"}},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200 and resp.json()["status"] == "submitted", resp.text
    return {**resp.json(), "resident": r}


async def test_the_queue_sorts_and_the_application_says_where_each_field_came_from(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services.models import Application

    admin = await login(roles=["admin"])
    dept = await fresh_department()
    items = [item_data(dept, name=f"{letter}类证明{secrets.token_hex(2)}") for letter in ("B", "A", "C")]
    assert (await import_csv(client, admin, csv_of([dict(i) for i in items]))).status_code == 303
    apps = [await _submitted(client, login, i["code"]) for i in items]
    # Submitted first, second, third; due in the order third, first, second.
    now = dt.datetime.now(dt.UTC)
    async with session_scope() as s:
        for app, submitted, due in zip(apps, (-3, -2, -1), (2, 3, 1), strict=True):
            row = await s.get(Application, app["id"])
            assert row is not None
            row.submitted_at = now + dt.timedelta(hours=submitted)
            row.due_at = now + dt.timedelta(days=due)
            s.add(row)
    reviewer, _ = await make_staff(client, login, department=dept)

    async def order(sort: str | None) -> list[str]:
        params = {"sort": sort} if sort else {}
        page = await client.get(f"{WB}/", params=params, headers=reviewer)
        assert page.status_code == 200, page.text
        return re.findall(r'<tr data-id="([0-9a-f]+)"', page.text)

    ids = [a["id"] for a in apps]
    assert await order(None) == [ids[2], ids[0], ids[1]]  # time left, most urgent first
    assert await order("due") == [ids[2], ids[0], ids[1]]
    assert await order("submitted") == ids
    assert await order("item") == [ids[1], ids[0], ids[2]]  # A, B, C
    assert await order("nonsense") == [ids[2], ids[0], ids[1]]
    # The same applications as the review API's queue.
    api = (await client.get(f"{API}/review/queue", headers=reviewer)).json()
    assert {a["id"] for a in api["applications"]} == set(ids)
    page = await client.get(f"{WB}/", params={"sort": "submitted"}, headers=reviewer)
    assert 'aria-sort="ascending"><a href="' in page.text and "提交时间（最早在前）" in page.text
    assert '<span id="total">3</span>' in page.text and 'id="pages"' not in page.text

    page = await client.get(f"{WB}/applications/{ids[0]}", headers=reviewer)
    assert page.status_code == 200, page.text

    def source(key: str) -> str:
        m = re.search(rf'<tr data-key="{re.escape(key)}">.*?<td class="source">(.*?)</td>', page.text, re.S)
        assert m, (key, page.text)
        return m.group(1)

    assert source("person.name").startswith("人口库")
    assert source("person.id_number").startswith("人口库")
    assert source("contact.remark") == "申请人填写"
    ecert = re.search(r'<li data-ecert="申请人居民身份证">(.*?)</li>', page.text, re.S)
    assert ecert and "来源：电子证照库" in ecert.group(1)
    assert apps[0]["resident"].id_number not in page.text


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
async def test_browser_an_editor_publishes_a_version_and_the_residents_guide_changes(
    client: httpx.AsyncClient, login: LoginFn, live_url: str
) -> None:
    admin = await login(roles=["admin"])
    dept = await fresh_department()
    data = item_data(dept)
    code = data["code"]
    assert (await import_csv(client, admin, csv_of([data]))).status_code == 303
    assert (await guide(client, code))["promised_days"] == 3
    phone, password = await staff(["admin"])
    async with browser_page(live_url) as page:
        await page.goto(f"{CAT}?department={dept}")
        await log_in(page, client, phone, password)
        assert await page.title() == "事项目录 · 我家亳州"
        # An import with a bad row, through the page: every error listed, nothing imported.
        broken = item_data(dept, name=f"工作台导入测试{secrets.token_hex(2)}")
        broken["_bad"] = {"身份认证等级": "高", "送达方式": "快递"}
        await page.get_by_label("目录文件（.xlsx 或 .csv，不超过 20MB）").set_input_files(
            {"name": "事项目录.csv", "mimeType": "text/csv", "buffer": csv_of([broken])}
        )
        async with page.expect_navigation():
            await page.get_by_role("button", name="导入").click()
        errors = await page.inner_text("#import-errors")
        assert "身份认证等级" in errors and "应为整数" in errors
        assert "未导入任何事项" in await page.inner_text("#e-file")
        await shot(page, "catalogue-import-errors")
        assert (await client.get(f"{API}/items/{broken['code']}")).status_code == 404
        await page.get_by_label("搜索事项（名称、俗称、拼音首字母）").fill(data["name"])
        async with page.expect_navigation():
            await page.get_by_role("button", name="搜索").click()
        await shot(page, "catalogue-search")
        async with page.expect_navigation():
            await page.get_by_role("link", name=f"编辑 {data['name']}").click()
        assert await page.title() == f"编辑事项 {code} · 我家亳州"

        # A mistake first: the message beside the field, the typed value kept.
        await page.get_by_label("承诺时限（工作日）").fill("五")
        async with page.expect_navigation():
            await page.get_by_role("button", name="发布新版本").click()
        assert "应为整数" in await page.inner_text("#e-promised_days")
        assert await page.get_by_label("承诺时限（工作日）").get_attribute("aria-invalid") == "true"
        await shot(page, "catalogue-item-error")
        await page.get_by_label("承诺时限（工作日）").fill("5")
        await page.get_by_label("办理地点").fill("谯城区政务服务中心二楼民政窗口")
        await page.get_by_label("身份认证等级").select_option("3")
        async with page.expect_navigation():
            await page.get_by_role("button", name="预览改动").click()
        assert "承诺时限（工作日）" in await page.inner_text("#preview")
        await shot(page, "catalogue-preview")
        async with page.expect_navigation():
            await page.get_by_role("button", name="发布新版本").click()
        assert "已发布第 2 版" in await page.inner_text("#message")
        assert "+ 5" in await page.inner_text("#diff")
        await shot(page, "catalogue-versions")
        # Keyboard: the skip link is the first Tab stop.
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "跳到正文"

    now = await guide(client, code)
    assert now["version"] == 2 and now["promised_days"] == 5 and now["identity_level"] == 3
    assert now["where_to_go"] == "谯城区政务服务中心二楼民政窗口"
