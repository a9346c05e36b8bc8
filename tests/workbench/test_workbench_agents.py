"""The station agents' workbench screens: a resident found by phone, an SMS mandate, a filing with the
address from the city's population record, a scan, a batch with per-row results, pickups.

HTTP tests send the forms as a browser would (bearer header instead of the cookie, so no CSRF
field); the browser test walks an agent filing a batch of 5 from an XLSX file.
Set ``WORKBENCH_SCREENSHOTS=1`` to save the screenshots into ``docs/workbench/``."""

from __future__ import annotations

import datetime as dt
import io
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from app_api.core.db import session_scope, sessionmaker
from tests.app_api.agents_helpers import (
    ITEM,
    OTHER_ITEM,
    AgentCtx,
    ResidentCtx,
    gov_applications,
    gov_catalogue,  # noqa: F401  (an autouse fixture)
    inbox,
    make_agent,
    make_resident,
    sms_mandate,
)
from tests.conftest import LoginFn, new_phone
from tests.workbench.test_workbench import CHROMIUM, browser_page, log_in, shot

AGENT = "/api/v1/workbench/agent"
ADDRESS = "安徽省亳州市谯城区十八里镇王庄村12号"


def idem() -> str:
    return secrets.token_urlsafe(18)


def field_error(html: str, name: str) -> str:
    m = re.search(rf'id="e-{name}"[^>]*>([^<]*)<', html)
    return m.group(1) if m else ""


async def registry_person(resident: ResidentCtx, address: str = ADDRESS) -> None:
    """The resident's record in the city's population registry (the embedded data center)."""
    from app_api.core.crypto import encrypt_str
    from app_api.platform.datahub.models import PopulationRecord
    from app_api.platform.datahub.service import id_hash

    async with session_scope() as s:
        s.add(
            PopulationRecord(
                id_number_hash=id_hash(resident.id_number),
                id_number_enc=encrypt_str(resident.id_number, aad="id_number"),
                name_enc=encrypt_str("王桂兰", aad="name"),
                gender="女",
                birth_date=dt.date(1948, 3, 1),
                address_enc=encrypt_str(address, aad="address"),
                household="谯城区",
            )
        )


async def actions_of(agent: AgentCtx, action: str) -> list[Any]:
    from app_api.platform.agents.models import AgentAction

    async with sessionmaker()() as s:
        q = select(AgentAction).where(AgentAction.agent_id == agent.id, AgentAction.action == action)
        return list((await s.exec(q)).all())


async def test_find_mandate_prefill_file_and_pickup(client: httpx.AsyncClient, login: LoginFn) -> None:
    from app_api.core.redis import get_redis

    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    await registry_person(resident)
    h = agent.headers

    r = await client.post(f"{AGENT}/find", headers=h, data={"phone": "12345"})
    assert r.status_code == 422 and field_error(r.text, "phone") == "请输入居民本人的11位手机号"
    r = await client.post(f"{AGENT}/find", headers=h, data={"phone": resident.phone})
    assert r.status_code == 303 and r.headers["location"] == f"{AGENT}/residents/{resident.id}"
    page = f"{AGENT}/residents/{resident.id}"
    r = await client.get(page, headers=h)
    assert "您还没有该居民的代办授权" in r.text and 'id="form-file"' not in r.text
    assert resident.phone not in r.text  # masked

    # The mandate: bad input beside the fields, then the SMS code the resident reads out.
    await (await get_redis()).delete(f"agents:mcool:{resident.phone}")
    r = await client.post(
        f"{AGENT}/mandates",
        headers=h,
        data={"resident_id": resident.id, "days": "400", "item_codes": "BZ-1,坏!", "idem": idem()},
    )
    assert r.status_code == 422
    assert field_error(r.text, "scopes") == "请至少选择一项授权范围"
    assert field_error(r.text, "days") == "授权期限为1至365天"
    assert field_error(r.text, "item_codes").startswith("事项编码只含")
    r = await client.post(
        f"{AGENT}/mandates",
        headers=h,
        data={
            "resident_id": resident.id,
            "scopes": ["apply", "upload", "track", "pickup"],
            "days": "30",
            "idem": idem(),
        },
    )
    assert r.status_code == 303 and r.headers["location"].startswith(f"{AGENT}/mandates/")
    code_page = r.headers["location"].split("?")[0]
    text = next(m["text"] for m in await inbox(client, resident.phone) if "授权验证码" in m["text"])
    code = re.search(r"授权验证码(\d{6})", text)
    assert code
    wrong = "000000" if code.group(1) != "000000" else "111111"
    r = await client.post(code_page, headers=h, data={"code": wrong, "idem": idem()})
    assert r.status_code == 422 and field_error(r.text, "code").startswith("验证码错误")
    r = await client.post(code_page, headers=h, data={"code": "12", "idem": idem()})
    assert field_error(r.text, "code") == "请输入居民手机收到的6位验证码"
    r = await client.post(code_page, headers=h, data={"code": code.group(1), "idem": idem()})
    assert r.status_code == 303 and r.headers["location"] == f"{page}?done=mandate"
    r = await client.get(page, headers=h)
    assert 'data-state="valid"' in r.text and 'id="form-file"' in r.text and "不限" in r.text

    # The address from the city's population record, read under the mandate and logged.
    r = await client.post(f"{page}/prefill", headers=h)
    assert r.status_code == 200 and f'value="{ADDRESS}"' in r.text and "已从城市人口信息调取" in r.text
    from app_api.platform.datahub.models import DataAccessLog

    async with sessionmaker()() as s:
        reads = (
            await s.exec(
                select(DataAccessLog).where(
                    DataAccessLog.subject_account_id == resident.id, DataAccessLog.record_type == "population"
                )
            )
        ).all()
    assert len(reads) == 1 and reads[0].accessor_id == agent.id
    assert reads[0].actor_kind == "agent" and reads[0].actor_org == agent.station.id and reads[0].mandate_id

    # Filing: bad input beside the fields, nothing filed; then once per form.
    r = await client.post(f"{page}/file", headers=h, data={"item_code": "", "address": "", "idem": idem()})
    assert r.status_code == 422
    assert field_error(r.text, "item_code").startswith("请输入事项编码")
    assert field_error(r.text, "address").startswith("请核对居民证件后填写户籍地址")
    r = await client.post(
        f"{page}/file", headers=h, data={"item_code": "BZ-NO-SUCH", "address": ADDRESS, "idem": idem()}
    )
    assert r.status_code == 422 and field_error(r.text, "item_code")
    assert await gov_applications(agent.id) == []
    form = {"item_code": ITEM, "address": ADDRESS, "pickup": "1", "idem": idem()}
    first = await client.post(f"{page}/file", headers=h, data=form)
    second = await client.post(f"{page}/file", headers=h, data=form)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    [app] = await gov_applications(agent.id)
    assert first.headers["location"] == f"{page}?done=filed&number={app.number}"
    from columns.gov_services.lifecycle import form_of

    assert app.applicant_id == resident.id and form_of(app).get("person.address") == ADDRESS
    filed_sms = [
        m for m in await inbox(client, resident.phone) if "代为" in m["text"] or app.number in m["text"]
    ]
    assert filed_sms

    # A scan for the submitted application is refused beside the file field (the catalogue's rule).
    r = await client.post(
        f"{page}/upload",
        headers=h,
        data={"application_id": app.id, "material": "申请人居民身份证", "idem": idem()},
        files={"file": ("id.png", _png(), "image/png")},
    )
    assert r.status_code == 422 and field_error(r.text, "file") == "申请已提交，不能再上传材料"
    r = await client.post(f"{page}/upload", headers=h, data={"application_id": app.id, "idem": idem()})
    assert field_error(r.text, "file") == "请选择扫描件（图片或PDF）"

    # The station's filings show it, with the pickup to record (once).
    r = await client.get(f"{AGENT}/", headers=h)
    assert f'data-number="{app.number}"' in r.text and "登记领取" in r.text
    row = r.text.split(f'data-number="{app.number}"')[1].split("</tr>")[0]
    assert "已提交" in row and "submitted" not in row and "提交时" not in row  # its state now ("track")
    sub_id = re.search(rf'<tr data-id="([^"]+)" data-number="{app.number}"', r.text)
    assert sub_id
    for _ in range(2):
        r = await client.post(f"{AGENT}/pickups/{sub_id.group(1)}", headers=h, data={"idem": idem()})
        assert r.status_code == 303
    assert len(await actions_of(agent, "result_picked_up")) == 1
    r = await client.get(f"{AGENT}/", headers=h)
    assert "已领取" in r.text


async def test_an_upload_for_a_supplement_is_stored(client: httpx.AsyncClient, login: LoginFn) -> None:
    from app_api.platform.accounts.principal import Principal
    from columns.gov_services import review
    from columns.gov_services.models import Application, Upload

    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    await sms_mandate(client, agent, resident, scopes=["apply", "upload"])
    page = f"{AGENT}/residents/{resident.id}"
    r = await client.post(
        f"{page}/file", headers=agent.headers, data={"item_code": ITEM, "address": ADDRESS, "idem": idem()}
    )
    assert r.status_code == 303
    [filed] = await gov_applications(agent.id)
    async with session_scope() as s:
        app = await s.get(Application, filed.id)
        assert app is not None
        reviewer = Principal(id=agent.id, roles=("reviewer",), identity_level=1, department=app.department)
        await review.accept(s, app=app, principal=reviewer)
        await review.request_supplement(
            s, app=app, principal=reviewer, reason="身份证复印件不清晰", materials=["申请人居民身份证"]
        )
    r = await client.post(
        f"{page}/upload",
        headers=agent.headers,
        data={"application_id": filed.id, "material": "申请人居民身份证", "idem": idem()},
        files={"file": ("id.png", _png(), "image/png")},
    )
    assert r.status_code == 303 and r.headers["location"] == f"{page}?done=uploaded"
    async with sessionmaker()() as s:
        uploads = (await s.exec(select(Upload).where(Upload.application_id == filed.id))).all()
    assert [u.material for u in uploads] == ["申请人居民身份证"]
    assert len(await actions_of(agent, "material_uploaded")) == 1


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (0, 0, 255)).save(buf, format="PNG")
    return buf.getvalue()


def batch_csv(rows: list[list[str]]) -> bytes:
    lines = ["手机号,事项编码,户籍地址,结果代领,备注", *(",".join(r) for r in rows)]
    return ("\n".join(lines) + "\n").encode("utf-8-sig")


async def residents_with_mandates(
    client: httpx.AsyncClient, login: LoginFn, agent: AgentCtx, n: int
) -> list[ResidentCtx]:
    out = []
    for _ in range(n):
        res = await make_resident(client, login)
        await sms_mandate(client, agent, res, scopes=["apply", "pickup"])
        out.append(res)
    return out


async def test_batch_gives_each_row_its_result_and_a_resend_files_nothing_twice(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    agent = await make_agent(client, login)
    residents = await residents_with_mandates(client, login, agent, 5)
    rows = [
        [r.phone, ITEM if i % 2 else OTHER_ITEM, ADDRESS, "是" if i == 0 else "否", ""]
        for i, r in enumerate(residents)
    ]
    rows += [
        [new_phone(), ITEM, ADDRESS, "否", ""],
        [residents[0].phone, ITEM, "", "否", ""],
        ["12", ITEM, ADDRESS, "", ""],
    ]
    key = idem()
    files = {"file": ("batch.csv", batch_csv(rows), "text/csv")}
    r = await client.post(f"{AGENT}/batch", headers=agent.headers, data={"idem": key}, files=files)
    assert r.status_code == 200, r.text
    statuses = re.findall(r'data-row="(\d+)" data-status="(\w+)"', r.text)
    assert statuses == [(str(i + 2), s) for i, s in enumerate(["created"] * 5 + ["failed"] * 3)]
    assert "未找到该手机号的居民账户" in r.text and "户籍地址" in r.text and "手机号格式不正确" in r.text
    assert "已代办提交 5 行" in r.text
    # Without a "track" mandate the station's list shows the state at filing, and says so.
    home = await client.get(f"{AGENT}/", headers=agent.headers)
    assert home.text.count("（提交时）") == 5 and home.text.count('<tr data-id="') == 5
    assert 'id="more"' not in home.text
    later = await client.get(f"{AGENT}/", headers=agent.headers, params={"page": 2})
    assert later.status_code == 200 and '<tr data-id="' not in later.text
    apps = await gov_applications(agent.id)
    assert len(apps) == 5 and {a.applicant_id for a in apps} == {r.id for r in residents}
    # The same form sent again (a double click, a reload): nothing filed twice.
    r = await client.post(f"{AGENT}/batch", headers=agent.headers, data={"idem": key}, files=files)
    assert "已代办提交 0 行，已提交过 5 行" in r.text
    assert len(await gov_applications(agent.id)) == 5

    # Files the screen cannot read: the message beside the file field, nothing filed.
    for name, data, message in [
        ("batch.txt", b"x", "仅支持 .csv 或 .xlsx 文件"),
        ("batch.csv", "手机号,事项编码\n1,2\n".encode(), "第1行须为列名，缺少：户籍地址"),
        ("batch.xlsx", b"not a workbook", "无法读取该 Excel 文件，请另存为 .xlsx 后重试"),
        ("batch.csv", batch_csv([[residents[0].phone, ITEM, ADDRESS, "否", ""]] * 101), "每批最多100行"),
    ]:
        r = await client.post(
            f"{AGENT}/batch",
            headers=agent.headers,
            data={"idem": idem()},
            files={"file": (name, data, "text/csv")},
        )
        assert r.status_code == 422 and field_error(r.text, "file") == message
    assert len(await gov_applications(agent.id)) == 5


async def test_other_roles_get_the_403_page(client: httpx.AsyncClient, login: LoginFn) -> None:
    reviewer = await login(roles=["reviewer"], department="市民政局")
    for url in (f"{AGENT}/", f"{AGENT}/batch"):
        r = await client.get(url, headers=reviewer)
        assert r.status_code == 403 and 'id="forbidden"' in r.text and "代办员" in r.text
    r = await client.post(f"{AGENT}/find", headers=reviewer, data={"phone": new_phone()})
    assert r.status_code == 403
    agent = await make_agent(client, login)
    r = await client.get("/api/v1/workbench/admin/staff", headers=agent.headers)
    assert r.status_code == 403 and "管理员" in r.text
    # An agent without a station is told so on the 403 page.
    loose = await login(roles=["agent"])
    r = await client.get(f"{AGENT}/", headers=loose)
    assert r.status_code == 403 and 'id="forbidden"' in r.text


def batch_xlsx(rows: list[list[str]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["手机号", "事项编码", "户籍地址", "结果代领", "备注"])
    for row in rows:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
async def test_agent_files_a_batch_of_5(
    client: httpx.AsyncClient, login: LoginFn, live_url: str, tmp_path: Path
) -> None:
    from app_api.platform.accounts.service import create_staff

    agent_api = await make_agent(client, login)  # the station
    phone, password = new_phone(), "Pw-" + secrets.token_hex(6)
    async with session_scope() as s:
        await create_staff(
            s, phone=phone, password=password, roles=["agent"], station_id=agent_api.station.id
        )
    me = await login_me(client, phone, password)
    agent = AgentCtx(me[0], me[1], agent_api.station)
    residents = await residents_with_mandates(client, login, agent, 5)
    from app_api.core.redis import get_redis

    await (await get_redis()).delete(f"sms:cool:{phone}")  # the API login above sent a code a moment ago
    book = tmp_path / "代办批次.xlsx"
    book.write_bytes(batch_xlsx([[r.phone, ITEM, ADDRESS, "是", "村代办点"] for r in residents]))
    async with browser_page(live_url) as page:
        await page.goto(f"{AGENT}/batch")
        await log_in(page, client, phone, password)
        assert page.url == f"{live_url}{AGENT}/batch" and await page.title() == "批量代办 · 我家亳州"
        async with page.expect_navigation():
            await page.get_by_role("button", name="提交批量代办").click()
        assert await page.inner_text("#e-file") == "请选择批量代办文件（.csv 或 .xlsx）"
        await page.get_by_label("批量代办文件").set_input_files(str(book))
        async with page.expect_navigation():
            await page.get_by_role("button", name="提交批量代办").click()
        assert "已代办提交 5 行" in await page.inner_text("#summary")
        assert await page.locator("#results tr[data-status=created]").count() == 5
        await shot(page, "agent-batch")

        await page.goto(f"{AGENT}/")
        assert await page.locator("#filings tbody tr[data-number]").count() == 5
        await page.get_by_label("居民手机号").fill(residents[0].phone)
        async with page.expect_navigation():
            await page.get_by_role("button", name="查找").click()
        assert page.url == f"{live_url}{AGENT}/residents/{residents[0].id}"
        await shot(page, "agent-resident")
        # A tablet at the liaison station: the page fits its width, the forms stay labelled.
        await page.set_viewport_size({"width": 768, "height": 1024})
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert await page.get_by_label("事项编码（必填）").count() == 1
        await shot(page, "agent-resident-tablet")
        await page.set_viewport_size({"width": 1366, "height": 768})
        async with page.expect_navigation():
            await page.locator("#filings button", has_text="登记领取").first.click()
        assert "已登记居民领取办理结果" in await page.inner_text("#message")
        assert await page.locator("#filings .picked").count() == 1
        await page.goto(f"{AGENT}/")
        await shot(page, "agent-home")
    assert len(await gov_applications(agent.id)) == 5


async def login_me(client: httpx.AsyncClient, phone: str, password: str) -> tuple[dict[str, str], str]:
    from tests.conftest import sms_code

    assert (await client.post("/api/v1/auth/sms-codes", json={"phone": phone})).status_code == 202
    r = await client.post(
        "/api/v1/auth/staff/login",
        json={"phone": phone, "code": await sms_code(client, phone), "password": password},
    )
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return headers, (await client.get("/api/v1/me", headers=headers)).json()["id"]


async def test_without_a_session_the_pages_go_to_the_login_and_back(client: httpx.AsyncClient) -> None:
    from urllib.parse import quote

    for url in (f"{AGENT}/", f"{AGENT}/batch"):
        r = await client.get(url, headers={"cookie": "wojia_console=expired.or.forged"})
        assert r.status_code == 303 and r.headers["location"].startswith("/api/v1/console/refresh?next=")
        r = await client.get(r.headers["location"])
        assert r.headers["location"] == f"/api/v1/console/login?next={quote(url, safe='')}"
    r = await client.post(f"{AGENT}/find", data={"phone": new_phone()})
    assert r.status_code in (401, 403)
