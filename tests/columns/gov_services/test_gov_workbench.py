"""The reviewers' workbench screens (issue 15): the department's queue with each application's clock,
one application with the applicant's form and materials (the read lands in the applicant's access log
naming the department), the actions its state allows done once per form, a field error shown beside the
field, another department's reviewer refused, and the supervision page scoped to the department."""

from __future__ import annotations

import re

import httpx

from app_api.platform.workbench import new_idem_key
from tests.columns.gov_services.conftest import API, Resident, jpeg, make_staff
from tests.columns.gov_services.rules_helpers import born_years_ago, prefilled_draft, resident_born
from tests.conftest import LoginFn

WB = f"{API}/workbench"
OLD_AGE = "BZ-MZ-001"  # 老年人优待证, 谯城区民政局
DEPARTMENT = "谯城区民政局"
PHOTO = "近期免冠彩色证件照片"
PHOTO_BYTES = jpeg((60, 80))


async def _submitted(client: httpx.AsyncClient, login: LoginFn) -> tuple[Resident, dict[str, str]]:
    r = await resident_born(client, login, birth=born_years_ago(67))
    app_id = await prefilled_draft(client, r, OLD_AGE)
    resp = await client.post(
        f"{API}/applications/{app_id}/uploads",
        data={"material": PHOTO},
        files={"file": ("证件照.jpg", PHOTO_BYTES, "image/jpeg")},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200 and resp.json()["status"] == "submitted", resp.text
    return r, resp.json()


async def _status(client: httpx.AsyncClient, r: Resident, app_id: str) -> str:
    return str((await client.get(f"{API}/applications/{app_id}", headers=r.headers)).json()["status"])


async def test_a_reviewer_works_an_application_from_the_queue_to_its_decision(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r, app = await _submitted(client, login)
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)

    page = await client.get(f"{WB}/", headers=reviewer)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    row = re.search(rf'<tr data-id="{app["id"]}"[^>]*>(.*?)</tr>', page.text, re.S)
    assert row, page.text
    assert app["number"] in row.group(1) and "老年" in row.group(1)
    assert re.search(r"0\.0 / \d+", row.group(1)) and "正常" in row.group(1)

    page = await client.get(f"{WB}/applications/{app['id']}", headers=reviewer)
    assert page.status_code == 200, page.text
    assert r.name in page.text  # the prefilled form
    assert r.id_number not in page.text  # shown masked
    assert r.id_number[:3] in page.text and r.id_number[-4:] in page.text
    assert 'id="form-accept"' in page.text and 'id="form-approve"' not in page.text  # not accepted yet
    log = (await client.get("/api/v1/me/data-access", headers=r.headers)).json()["items"]
    assert any(x["actor"] == f"{DEPARTMENT} 审核人员（办件 {app['number']}）" for x in log)
    # The photo the resident uploaded, previewed as it was sent, inert.
    (href,) = set(re.findall(rf'href="({WB}/applications/{app["id"]}/materials/[0-9a-f]+)"', page.text))
    assert f'<img src="{href}"' in page.text
    shown = await client.get(href, headers=reviewer)
    assert shown.status_code == 200 and shown.content == PHOTO_BYTES
    assert (
        shown.headers["content-type"] == "image/jpeg" and shown.headers["x-content-type-options"] == "nosniff"
    )
    assert shown.headers["content-security-policy"].startswith("sandbox")
    assert shown.headers["cache-control"] == "no-store"

    # 受理, sent twice with the same form: done once, both land on the application.
    key = new_idem_key()
    for _ in range(2):
        resp = await client.post(
            f"{WB}/applications/{app['id']}/accept", data={"idem": key}, headers=reviewer
        )
        assert resp.status_code == 303, resp.text
        assert resp.headers["location"] == f"{WB}/applications/{app['id']}?done=accept"
    assert await _status(client, r, app["id"]) == "accepted"
    timeline = (await client.get(f"{API}/applications/{app['id']}", headers=r.headers)).json()["timeline"]
    assert sum(1 for e in timeline if e["kind"] == "accepted") == 1, timeline

    # A supplement request without its reason: the page says so beside the field, nothing changes.
    resp = await client.post(
        f"{WB}/applications/{app['id']}/supplement",
        data={"idem": new_idem_key(), "reason": "", "materials": ["居民身份证"]},
        headers=reviewer,
    )
    assert resp.status_code == 422, resp.text
    assert "请填写原因" in resp.text and 'aria-invalid="true"' in resp.text
    assert await _status(client, r, app["id"]) == "accepted"

    resp = await client.post(
        f"{WB}/applications/{app['id']}/approve",
        data={"idem": new_idem_key(), "note": "材料齐全，准予办理"},
        headers=reviewer,
    )
    assert resp.status_code == 303, resp.text
    page = await client.get(resp.headers["location"], headers=reviewer)
    assert "已办结（准予办理）" in page.text and 'id="no-actions"' in page.text
    assert await _status(client, r, app["id"]) in ("approved", "posted", "delivered")
    # The decided application leaves the queue.
    assert app["id"] not in (await client.get(f"{WB}/", headers=reviewer)).text


async def test_another_departments_reviewer_and_a_resident_are_refused(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r, app = await _submitted(client, login)
    other, _ = await make_staff(client, login, department="谯城区公安分局")
    page = await client.get(f"{WB}/applications/{app['id']}", headers=other)
    assert page.status_code == 403 and "不属于您所在的部门" in page.text
    resp = await client.post(
        f"{WB}/applications/{app['id']}/accept", data={"idem": new_idem_key()}, headers=other
    )
    assert resp.status_code == 403
    assert await _status(client, r, app["id"]) == "submitted"
    # Nor fetch its materials, even with the material's id.
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    page = await client.get(f"{WB}/applications/{app['id']}", headers=reviewer)
    (href,) = set(re.findall(rf'href="({WB}/applications/{app["id"]}/materials/[0-9a-f]+)"', page.text))
    refused = await client.get(href, headers=other)
    assert refused.status_code == 403 and PHOTO_BYTES not in refused.content
    assert app["number"] not in (await client.get(f"{WB}/", headers=other)).text
    # Nothing was read on the applicant's behalf by the refused reviewer.
    log = (await client.get("/api/v1/me/data-access", headers=r.headers)).json()["items"]
    assert not any("谯城区公安分局" in x["actor"] for x in log)

    finance = await login(roles=["finance"])
    page = await client.get(f"{WB}/", headers=finance)
    assert page.status_code == 403 and "审核人员" in page.text
    resident = await client.get(f"{WB}/", headers=r.headers)
    assert resident.status_code in (401, 403)
    assert r.name not in resident.text


async def test_the_supervision_page_shows_the_departments_figures_and_only_its_own(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    await _submitted(client, login)
    supervisor, _ = await make_staff(client, login, department=DEPARTMENT, supervisor=True)
    page = await client.get(f"{WB}/supervision", headers=supervisor)
    assert page.status_code == 200, page.text
    row = re.search(rf'<tr data-department="{DEPARTMENT}">(.*?)</tr>', page.text, re.S)
    assert row, page.text
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert int(cells[3]) >= 1  # in progress, ours among them
    assert "谯城区公安分局" not in page.text
    refused = await client.get(
        f"{WB}/supervision", params={"department": "谯城区公安分局"}, headers=supervisor
    )
    assert refused.status_code == 403

    admin = await login(roles=["admin"])
    page = await client.get(f"{WB}/supervision", headers=admin)
    assert page.status_code == 200 and f'data-department="{DEPARTMENT}"' in page.text


async def test_a_supervisor_answers_a_one_star_rating_and_exports_the_figures(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r, app = await _submitted(client, login)
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    for action in ("accept", "approve"):
        resp = await client.post(f"{API}/review/applications/{app['id']}/{action}", json={}, headers=reviewer)
        assert resp.status_code == 200, resp.text
    resp = await client.post(
        f"{API}/applications/{app['id']}/rating", json={"score": 1, "text": "窗口排队太久"}, headers=r.headers
    )
    assert resp.status_code == 201 and resp.json()["follow_up"] == "open", resp.text
    rating_id = resp.json()["id"]

    supervisor, _ = await make_staff(client, login, department=DEPARTMENT, supervisor=True)
    page = await client.get(f"{WB}/supervision", headers=supervisor)
    form = re.search(rf'<form[^>]*id="follow-up-{rating_id}".*?</form>', page.text, re.S)
    assert form and "窗口排队太久" in form.group(0) and "1 星" in form.group(0), page.text

    # An answer too short is shown beside its field; nothing is sent.
    resp = await client.post(
        f"{WB}/ratings/{rating_id}/answer", data={"idem": new_idem_key(), "answer": "好"}, headers=supervisor
    )
    assert resp.status_code == 422 and "请填写回访答复" in resp.text, resp.text
    key = new_idem_key()
    for _ in range(2):  # a double-submitted form answers once
        resp = await client.post(
            f"{WB}/ratings/{rating_id}/answer",
            data={"idem": key, "answer": "已增加高峰时段窗口，感谢您的意见"},
            headers=supervisor,
        )
        assert resp.status_code == 303, resp.text
    page = await client.get(resp.headers["location"], headers=supervisor)
    assert "回访答复已发送" in page.text and f'id="follow-up-{rating_id}"' not in page.text
    timeline = (await client.get(f"{API}/applications/{app['id']}", headers=r.headers)).json()["timeline"]
    answers = [e for e in timeline if e["kind"] == "follow_up_answered"]
    assert [e["note"] for e in answers] == ["已增加高峰时段窗口，感谢您的意见"]

    resp = await client.get(f"{WB}/supervision.csv", headers=supervisor)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    text = resp.content.decode("utf-8")
    assert text.startswith("\ufeff部门,提交,办结")
    assert any(line.startswith(DEPARTMENT + ",") for line in text.splitlines())
    assert "谯城区公安分局" not in text
    refused = await client.get(
        f"{WB}/supervision.csv", params={"department": "谯城区公安分局"}, headers=supervisor
    )
    assert refused.status_code == 403
