"""The government services reviewers' and supervisors' screens (issue 15) in a real browser (Debian's
chromium driven by Playwright): a reviewer takes an application from the queue to its approval; a
supplement round trip (the reviewer asks for a material with a reason, the resident uploads it through
the API, the reviewer sees it and approves); a supervisor answers a 1-star rating.

Each test works in a department and item of its own (imported through the catalogue), so the queue and
the supervision board hold this test's applications only, whatever else the database holds.
``WORKBENCH_SCREENSHOTS=1`` saves the screens into ``docs/workbench/gov-*.png``."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from tests.columns.gov_services.conftest import (  # noqa: F401  (gov_catalogue: a fixture)
    API,
    Resident,
    gov_catalogue,
    jpeg,
    make_resident,
    make_staff,
    png,
)
from tests.conftest import LoginFn
from tests.workbench.test_workbench import CHROMIUM, browser_page, log_in, shot, staff
from tests.workbench.test_workbench_catalogue import csv_of, fresh_department, import_csv, item_data

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
    pytest.mark.usefixtures("gov_catalogue"),
]

WB = f"{API}/workbench"
PHOTO = "近期免冠彩色证件照片"


async def department_with_item(client: httpx.AsyncClient, login: LoginFn) -> tuple[str, str]:
    """A fresh department and its item (老年人优待证's ID card by e-certificate and the photo as an
    upload), imported through the catalogue: (department, item code)."""
    from columns.gov_services.catalogue import seed_catalogue

    base = seed_catalogue().item("BZ-MZ-001")
    assert base is not None
    dept = await fresh_department()
    materials = [m.model_dump(mode="json") for m in base.materials if m.name in ("申请人居民身份证", PHOTO)]
    # The photo only as an upload (not filled from the population record), so it is what was sent.
    for m in materials:
        if m["name"] == PHOTO:
            m["fill_fields"] = []
    data = item_data(dept, materials=materials)
    admin = await login(roles=["admin"])
    assert (await import_csv(client, admin, csv_of([data]))).status_code == 303
    return dept, data["code"]


async def submitted(client: httpx.AsyncClient, login: LoginFn, code: str) -> tuple[Resident, dict[str, Any]]:
    """A resident's application of ``code``: filled from the records, the photo uploaded, submitted."""
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
    resp = await client.post(
        f"{API}/applications/{app_id}/uploads",
        data={"material": PHOTO},
        files={"file": ("证件照.jpg", jpeg((60, 80)), "image/jpeg")},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200 and resp.json()["status"] == "submitted", resp.text
    return r, resp.json()


async def mine(client: httpx.AsyncClient, r: Resident, app_id: str) -> dict[str, Any]:
    """The application as the resident's app shows it."""
    resp = await client.get(f"{API}/applications/{app_id}", headers=r.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def notifications(client: httpx.AsyncClient, r: Resident) -> str:
    items = (await client.get("/api/v1/me/notifications", headers=r.headers)).json()["items"]
    return "\n".join(n["text"] for n in items)


async def press(page: Any, button: str) -> None:
    """Click a form's button and wait for the page the form leads to."""
    async with page.expect_navigation():
        await page.get_by_role("button", name=button, exact=True).click()


async def test_a_reviewer_approves_an_application_from_the_queue(
    client: httpx.AsyncClient, login: LoginFn, live_url: str
) -> None:
    dept, code = await department_with_item(client, login)
    r, app = await submitted(client, login, code)
    phone, password = await staff(["reviewer"], department=dept)
    async with browser_page(live_url) as page:
        await page.goto(f"{WB}/")
        assert "/api/v1/console/login" in page.url
        await log_in(page, client, phone, password)
        assert page.url == f"{live_url}{WB}/" and await page.title() == "审核办件 · 我家亳州"
        assert dept in await page.inner_text("h1")
        row = page.locator(f"#queue tr[data-id='{app['id']}']")
        assert await row.count() == 1
        text = await row.inner_text()
        assert app["number"] in text and "已提交" in text and "正常" in text
        assert await page.inner_text("#total") == "1"
        await shot(page, "gov-queue")

        async with page.expect_navigation():
            await page.get_by_role("link", name=f"办理 {app['number']}").click()
        assert await page.title() == f"办件 {app['number']} · 我家亳州"
        assert "已提交" in await page.inner_text("#status")
        form = await page.inner_text("#form")
        assert r.name in form and r.id_number not in await page.content()  # the ID number masked
        assert "证件照.jpg" in await page.inner_text("#materials")
        assert await page.get_by_role("img", name=PHOTO).count() == 1
        # Each action says what the resident will be told before it is confirmed.
        assert "居民将收到通知：申请已受理" in await page.inner_text("#form-accept")
        assert await page.locator("#form-approve").count() == 0  # not accepted yet
        await press(page, "确认受理")
        assert "已受理" in await page.inner_text("#status")
        assert "已受理。当前状态：已受理" in await page.inner_text("#message")

        await page.get_by_label("办理意见（选填）").fill("材料齐全，准予办理")
        await press(page, "确认办结（准予办理）")
        assert "已办结（准予办理）" in await page.inner_text("#message")
        assert await page.locator("#no-actions").count() == 1
        events = await page.inner_text("#events")
        assert "材料齐全，准予办理" in events
        await shot(page, "gov-application")

        # The decided application has left the queue.
        await page.goto(f"{WB}/")
        assert await page.locator(f"#queue tr[data-id='{app['id']}']").count() == 0
        assert "暂无待办办件" in await page.inner_text("#queue")

    seen = await mine(client, r, app["id"])
    assert seen["status"] in ("approved", "posted", "delivered"), seen
    assert seen["status_name"] in ("已办结", "结果已寄出", "结果已送达")
    kinds = [e["kind"] for e in seen["timeline"]]
    assert kinds.count("accepted") == 1 and kinds.count("approved") == 1, kinds
    assert [e["note"] for e in seen["timeline"] if e["kind"] == "approved"] == ["材料齐全，准予办理"]


async def test_a_supplement_round_trip(client: httpx.AsyncClient, login: LoginFn, live_url: str) -> None:
    dept, code = await department_with_item(client, login)
    r, app = await submitted(client, login, code)
    phone, password = await staff(["reviewer"], department=dept)
    reason = "照片背景不是白色，请上传白底一寸证件照"
    page_url = f"{WB}/applications/{app['id']}"
    async with browser_page(live_url) as page:
        await page.goto(page_url)
        await log_in(page, client, phone, password)
        assert page.url == live_url + page_url
        await press(page, "确认受理")
        assert "已受理" in await page.inner_text("#status")

        # Without a reason: said beside the field, the chosen material kept, nothing changes.
        await page.get_by_label(PHOTO).check()
        await press(page, "确认要求补正")
        assert "请填写原因" in await page.inner_text("#e-supplement-reason")
        field = page.get_by_label("补正原因（必填，居民会看到）")
        assert await field.get_attribute("aria-invalid") == "true"
        assert await page.get_by_label(PHOTO).is_checked()
        assert "已受理" in await page.inner_text("#status")
        assert (await mine(client, r, app["id"]))["status"] == "accepted"
        await shot(page, "gov-supplement")
        await field.fill(reason)
        await press(page, "确认要求补正")
        assert "待补正" in await page.inner_text("#status")
        assert "补正中，暂停计时" in await page.inner_text("#clock")
        assert reason in await page.inner_text("#events")
        # While waiting for the resident, the reviewer can only reject.
        assert await page.locator("#form-approve").count() == 0

        # The resident's side: the reason in the application and the notice, the clock stopped.
        seen = await mine(client, r, app["id"])
        assert seen["status"] == "supplement" and seen["status_name"] == "待补正" and seen["paused"]
        last = seen["timeline"][-1]
        assert last["kind"] == "supplement_requested" and last["note"] == reason
        assert reason in await notifications(client, r)
        resp = await client.post(
            f"{API}/applications/{app['id']}/uploads",
            data={"material": PHOTO},
            files={"file": ("白底证件照.png", png(), "image/png")},
            headers=r.headers,
        )
        assert resp.status_code == 201, resp.text
        resp = await client.post(f"{API}/applications/{app['id']}/supplement", headers=r.headers)
        assert resp.status_code == 200 and resp.json()["status"] == "accepted", resp.text

        await page.reload()
        assert "已受理" in await page.inner_text("#status")
        assert "补正中" not in await page.inner_text("#clock")
        upload = page.locator("#materials li", has_text="白底证件照.png")
        assert await upload.count() == 1 and "PNG" in await upload.inner_text()
        events = await page.inner_text("#events")
        assert "需要补正材料（暂停计时）" in events and "补正材料，恢复计时" in events
        await press(page, "确认办结（准予办理）")
        assert await page.locator("#no-actions").count() == 1

    seen = await mine(client, r, app["id"])
    assert seen["status"] in ("approved", "posted", "delivered"), seen
    kinds = [e["kind"] for e in seen["timeline"]]
    assert kinds.index("supplement_requested") < kinds.index("supplemented") < kinds.index("approved")
    assert "白底证件照.png" in {u["filename"] for u in seen["uploads"] or []}


async def test_a_supervisor_answers_a_one_star_rating(
    client: httpx.AsyncClient, login: LoginFn, live_url: str
) -> None:
    dept, code = await department_with_item(client, login)
    r, app = await submitted(client, login, code)
    reviewer, _ = await make_staff(client, login, department=dept)
    for action in ("accept", "approve"):
        resp = await client.post(f"{API}/review/applications/{app['id']}/{action}", json={}, headers=reviewer)
        assert resp.status_code == 200, resp.text
    resp = await client.post(
        f"{API}/applications/{app['id']}/rating",
        json={"score": 1, "text": "窗口排队太久"},
        headers=r.headers,
    )
    assert resp.status_code == 201 and resp.json()["follow_up"] == "open", resp.text
    rating_id = resp.json()["id"]
    answer = "已增加高峰时段窗口，感谢您的意见"

    phone, password = await staff(["reviewer"], department=dept, supervisor_of=dept)
    async with browser_page(live_url) as page:
        await page.goto(f"{WB}/supervision")
        await log_in(page, client, phone, password)
        assert await page.title() == "效能督办 · 我家亳州"
        assert dept in await page.inner_text("h1")
        figures = page.locator(f"#figures tr[data-department='{dept}']")
        cells = await figures.locator("td").all_inner_texts()
        assert cells[:3] == [dept, "1", "1"], cells  # submitted 1, decided 1
        assert await page.locator("#figures tbody tr").count() == 1  # its own department only
        card = page.locator(f"#follow-up-{rating_id}")
        assert "1 星" in await card.inner_text() and "窗口排队太久" in await card.inner_text()
        await shot(page, "gov-supervision")

        # Too short: said beside the field, the text kept, nothing sent.
        field = page.get_by_label("回访答复（居民会看到）")
        await field.fill("好")
        await press(page, "发送答复")
        assert "请填写回访答复" in await page.inner_text(f"#e-answer-{rating_id}")
        assert await field.get_attribute("aria-invalid") == "true" and await field.input_value() == "好"
        await shot(page, "gov-rating-answer")
        await field.fill(answer)
        await press(page, "发送答复")
        assert "回访答复已发送" in await page.inner_text("#message")
        assert await page.locator(f"#follow-up-{rating_id}").count() == 0
        assert await page.locator("#no-follow-ups").count() == 1

    seen = await mine(client, r, app["id"])
    answered = [e for e in seen["timeline"] if e["kind"] == "follow_up_answered"]
    assert [(e["title"], e["note"]) for e in answered] == [("部门回访", answer)]
    assert f"{dept} 对您的评价回复：{answer}" in await notifications(client, r)


async def test_the_reviewer_sees_the_uploaded_photo(
    client: httpx.AsyncClient, login: LoginFn, live_url: str
) -> None:
    dept, code = await department_with_item(client, login)
    _, app = await submitted(client, login, code)
    phone, password = await staff(["reviewer"], department=dept)
    async with browser_page(live_url) as page:
        await page.goto(f"{WB}/applications/{app['id']}")
        await log_in(page, client, phone, password)
        photo = page.get_by_role("img", name=PHOTO)
        await photo.scroll_into_view_if_needed()
        # The 60x80 photo the resident sent, drawn (a blocked or broken image has no natural size).
        await page.wait_for_function("e => e.complete", arg=await photo.element_handle())
        assert await photo.evaluate("e => [e.naturalWidth, e.naturalHeight]") == [60, 80]
