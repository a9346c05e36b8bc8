"""Life events (一件事, issue 16 item 4) end to end through the HTTP API: one combined form, one set
of materials, one consent screen; on submission one application per item in each department's
queue with its own clock, items that need another item's result filed when it is issued; a combined
timeline; one delivery when the last result is in. Bad input: an unknown life event, an item of it
not available, a client key reused, a submission repeated."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from tests.columns.gov_services.conftest import API, SANDBOX, Resident, jpeg, make_staff, pdf
from tests.columns.gov_services.rules_helpers import born_years_ago, resident_born
from tests.columns.utilities.utilities_helpers import wait_until
from tests.conftest import LoginFn

NEWBORN = "BZ-YJS-001"
BUSINESS = "BZ-YJS-002"
BIRTH_CERT, HUKOU, SOCIAL_CARD, INSURANCE = "BZ-WJ-005", "BZ-GA-004", "BZ-RS-005", "BZ-YB-002"
DEPARTMENTS = {
    BIRTH_CERT: "亳州市卫生健康委员会",
    HUKOU: "谯城区公安分局",
    SOCIAL_CARD: "亳州市人力资源和社会保障局",
    INSURANCE: "亳州市医疗保障局",
}
ADDRESS = {"name": "测试家长", "phone": "13900001111", "address": "安徽省亳州市谯城区魏武大道88号"}


def _newborn_fields(days_old: int = 10) -> dict[str, str]:
    from app_api.core.clock import china_today

    return {
        "newborn.name": "测试宝宝",
        "newborn.gender": "女",
        "newborn.birth_date": (china_today() - dt.timedelta(days=days_old)).isoformat(),
        "newborn.birth_place": "亳州市人民医院",
    }


async def _bundle(client: httpx.AsyncClient, r: Resident, bundle_id: str) -> dict[str, Any]:
    resp = await client.get(f"{API}/bundle-applications/{bundle_id}", headers=r.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _child(bundle: dict[str, Any], code: str) -> dict[str, Any]:
    [child] = [a for a in bundle["applications"] if a["item_code"] == code]
    return dict(child)


async def _decide(client: httpx.AsyncClient, reviewer: dict[str, str], app_id: str) -> None:
    for step in ("accept", "approve"):
        resp = await client.post(f"{API}/review/applications/{app_id}/{step}", json={}, headers=reviewer)
        assert resp.status_code == 200, resp.text


async def _in_queue(client: httpx.AsyncClient, reviewer: dict[str, str], app_id: str) -> bool:
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    return app_id in [a["id"] for a in queue]


async def test_the_combined_guide_asks_each_field_and_material_once_in_the_items_order(
    client: httpx.AsyncClient, gov_catalogue: None
) -> None:
    listed = (await client.get(f"{API}/bundles")).json()["bundles"]
    by_code = {b["code"]: b for b in listed}
    assert by_code[NEWBORN]["name"] == "新生儿出生一件事" and by_code[NEWBORN]["available"]
    assert [i["code"] for i in by_code[NEWBORN]["items"]] == [BIRTH_CERT, HUKOU, SOCIAL_CARD, INSURANCE]
    assert set(by_code[NEWBORN]["departments"]) == set(DEPARTMENTS.values())
    assert by_code[BUSINESS]["items"][0]["code"] == "BZ-SJ-003"

    guide = (await client.get(f"{API}/bundles/{NEWBORN}")).json()
    keys = [f["key"] for f in guide["fields"]]
    assert len(keys) == len(set(keys)) and {"newborn.name", "person.id_number"} <= set(keys)
    names = [m["name"] for m in guide["materials"]]
    assert len(names) == len(set(names))
    id_card = next(m for m in guide["materials"] if m["name"] == "申请人居民身份证")
    assert id_card["items"] == [SOCIAL_CARD, INSURANCE] and id_card["from_resident"]
    birth = next(m for m in guide["materials"] if m["name"] == "出生医学证明")
    assert birth["produced_by"] == [BIRTH_CERT] and not birth["from_resident"]
    assert guide["order"] == [[BIRTH_CERT, SOCIAL_CARD], [HUKOU], [INSURANCE]]
    person = next(c for c in guide["consents"] if c["group"] == "person")
    assert (
        set(person["departments"]) == set(DEPARTMENTS.values())
        and "新生儿出生一件事" in person["consent_text"]
    )
    assert guide["delivery"] == ["免费邮寄", "窗口领取"]

    business = (await client.get(f"{API}/bundles/{BUSINESS}")).json()
    assert business["order"][0] == ["BZ-SJ-003"]
    assert {i["code"]: i["waits_for"] for i in business["items"]}["BZ-GA-006"] == ["BZ-SJ-003"]

    missing = await client.get(f"{API}/bundles/BZ-YJS-999")
    assert missing.status_code == 404 and missing.json()["code"] == "gov_services.bundle_not_found"


async def test_a_newborn_bundle_reaches_four_departments_and_is_delivered_once_after_the_last_approval(
    client: httpx.AsyncClient,
    login: LoginFn,
    gov_catalogue: None,
    live_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services import life_event_applications, tasks
    from columns.gov_services.config import get_config
    from columns.gov_services.models import BundleEvent, Upload, Waybill
    from columns.gov_services.sandbox import postal as postal_sandbox

    monkeypatch.setattr(get_config(), "postal_url", f"{live_url}{SANDBOX}/postal")
    # A parent whose identity card is not in the e-certificate library: it is uploaded once.
    r = await resident_born(
        client, login, birth=born_years_ago(30), certs=(("household_register", "居民户口簿"),)
    )
    reviewers = {code: (await make_staff(client, login, department=d))[0] for code, d in DEPARTMENTS.items()}
    key = uuid.uuid4().hex
    body = {"bundle_code": NEWBORN, "client_key": key, "consent_groups": ["person", "certificate"]}
    resp = await client.post(f"{API}/bundle-applications", json=body, headers=r.headers)
    assert resp.status_code == 201, resp.text
    draft = resp.json()
    assert draft["status"] == "draft" and draft["number"].startswith("YJ")
    assert set(draft["form"]["consents"]) == {"person", "certificate"}
    assert "居民户口簿" in draft["form"]["ecerts"]
    assert sorted(draft["missing_materials"]) == ["父母双方居民身份证", "申请人居民身份证"]
    # The same client key gives back the same draft.
    again = await client.post(f"{API}/bundle-applications", json=body, headers=r.headers)
    assert again.status_code == 200 and again.json()["id"] == draft["id"]
    bid = draft["id"]

    for material in ("父母双方居民身份证", "申请人居民身份证"):
        up = await client.post(
            f"{API}/bundle-applications/{bid}/uploads",
            data={"material": material},
            files={"file": ("id.pdf", pdf(), "application/pdf")},
            headers=r.headers,
        )
        assert up.status_code == 201, up.text
    # Fields the records hold cannot be typed; the newborn's fields are asked once.
    typed = await client.put(
        f"{API}/bundle-applications/{bid}/fields", json={"fields": {"person.name": "别人"}}, headers=r.headers
    )
    assert typed.status_code == 422
    early = await client.post(
        f"{API}/bundle-applications/{bid}/submit",
        json={"delivery": "免费邮寄", "address": ADDRESS},
        headers=r.headers,
    )
    assert early.status_code == 422 and early.json()["code"] == "gov_services.bundle_fields_invalid"
    assert "newborn.name" in early.json()["problems"]
    unborn = await client.put(
        f"{API}/bundle-applications/{bid}/fields", json={"fields": _newborn_fields(-2)}, headers=r.headers
    )
    assert unborn.status_code == 200  # typed as asked; checked on submission
    future = await client.post(
        f"{API}/bundle-applications/{bid}/submit",
        json={"delivery": "免费邮寄", "address": ADDRESS},
        headers=r.headers,
    )
    assert future.status_code == 422
    assert future.json()["problems"] == {"newborn.birth_date": "新生儿出生日期不能晚于今天"}
    filled = await client.put(
        f"{API}/bundle-applications/{bid}/fields", json={"fields": _newborn_fields()}, headers=r.headers
    )
    assert filled.status_code == 200 and filled.json()["missing_materials"] == []
    no_address = await client.post(
        f"{API}/bundle-applications/{bid}/submit", json={"delivery": "窗口领取"}, headers=r.headers
    )
    assert no_address.status_code == 422 and no_address.json()["code"] == "gov_services.delivery_invalid"

    resp = await client.post(
        f"{API}/bundle-applications/{bid}/submit",
        json={"delivery": "免费邮寄", "address": ADDRESS},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    submitted = resp.json()
    assert submitted["status"] == "processing" and len(submitted["applications"]) == 4
    statuses = {a["item_code"]: a["status"] for a in submitted["applications"]}
    assert statuses == {BIRTH_CERT: "submitted", SOCIAL_CARD: "submitted", HUKOU: "draft", INSURANCE: "draft"}
    # Each item's application has its department and its own clock.
    for a in submitted["applications"]:
        assert a["department"] == DEPARTMENTS[a["item_code"]]
    assert (
        _child(submitted, BIRTH_CERT)["limit_days"] == 1
        and _child(submitted, SOCIAL_CARD)["limit_days"] == 10
    )
    assert _child(submitted, BIRTH_CERT)["due_at"] and _child(submitted, HUKOU)["due_at"] is None
    # Submitting again changes nothing.
    resubmit = await client.post(
        f"{API}/bundle-applications/{bid}/submit",
        json={"delivery": "免费邮寄", "address": ADDRESS},
        headers=r.headers,
    )
    assert resubmit.status_code == 200
    assert [a["application_id"] for a in resubmit.json()["applications"]] == [
        a["application_id"] for a in submitted["applications"]
    ]
    ids = {a["item_code"]: a["application_id"] for a in submitted["applications"]}
    # Uploaded once, used by each item that needs it; the form carries the newborn's fields.
    async with session_scope() as s:
        rows = (await s.exec(select(Upload).where(col(Upload.application_id).in_(list(ids.values()))))).all()
    used = sorted((next(c for c, i in ids.items() if i == u.application_id), u.material) for u in rows)
    assert used == sorted(
        [
            (BIRTH_CERT, "父母双方居民身份证"),
            (HUKOU, "父母双方居民身份证"),
            (SOCIAL_CARD, "申请人居民身份证"),
            (INSURANCE, "申请人居民身份证"),
        ]
    )
    assert len({u.storage_key for u in rows}) == 2
    social = (await client.get(f"{API}/applications/{ids[SOCIAL_CARD]}", headers=r.headers)).json()
    shown = {f["key"]: f["value"] for f in social["form"]["fields"]}
    assert shown["newborn.name"] == "测试宝宝" and social["delivery"] == "免费邮寄"

    assert await _in_queue(client, reviewers[BIRTH_CERT], ids[BIRTH_CERT])
    assert await _in_queue(client, reviewers[SOCIAL_CARD], ids[SOCIAL_CARD])
    assert not await _in_queue(client, reviewers[HUKOU], ids[HUKOU])
    # The waiting application is the life event's to file: not by hand, not with another certificate.
    for path, kwargs in (
        ("submit", {"json": {"delivery": "免费邮寄", "address": ADDRESS}}),
        ("prefill", {"json": {"groups": ["certificate"]}}),
    ):
        by_hand = await client.post(f"{API}/applications/{ids[HUKOU]}/{path}", headers=r.headers, **kwargs)
        assert by_hand.status_code == 409 and by_hand.json()["code"] == "gov_services.invalid_state", (
            by_hand.text
        )

    # The birth certificate is issued: the hukou registration is filed with it.
    await _decide(client, reviewers[BIRTH_CERT], ids[BIRTH_CERT])

    async def hukou_filed() -> bool:
        return bool(_child(await _bundle(client, r, bid), HUKOU)["status"] == "submitted")

    await wait_until(hukou_filed, timeout=20)
    assert await _in_queue(client, reviewers[HUKOU], ids[HUKOU])
    birth_no = _child(await _bundle(client, r, bid), BIRTH_CERT)["result_cert_no"]
    hukou = (await client.get(f"{API}/applications/{ids[HUKOU]}", headers=r.headers)).json()
    assert hukou["form"]["ecerts"]["出生医学证明"]["cert_no"] == birth_no

    await _decide(client, reviewers[SOCIAL_CARD], ids[SOCIAL_CARD])
    await _decide(client, reviewers[HUKOU], ids[HUKOU])

    async def insurance_filed() -> bool:
        return bool(_child(await _bundle(client, r, bid), INSURANCE)["status"] == "submitted")

    await wait_until(insurance_filed, timeout=20)
    assert await _in_queue(client, reviewers[INSURANCE], ids[INSURANCE])
    # Three results are in, nothing is delivered yet.
    before = await _bundle(client, r, bid)
    assert before["status"] == "processing" and before["tracking_no"] is None
    assert {a["status"] for a in before["applications"] if a["item_code"] != INSURANCE} == {"approved"}

    await _decide(client, reviewers[INSURANCE], ids[INSURANCE])

    async def completed() -> bool:
        return bool((await _bundle(client, r, bid))["status"] == "completed")

    await wait_until(completed, timeout=20)
    done = await _bundle(client, r, bid)
    tracking = done["tracking_no"]
    assert tracking and done["status_name"] == "已全部办结" and done["completed_at"]
    posted = {a["item_code"]: (a["status"], a["tracking_no"]) for a in done["applications"]}
    assert posted == {
        BIRTH_CERT: ("posted", tracking),
        HUKOU: ("posted", tracking),
        SOCIAL_CARD: ("posted", tracking),
        INSURANCE: ("approved", None),
    }
    # One waybill, for the life event; none per item.
    assert postal_sandbox._by_order.get(bid) == tracking
    assert not set(ids.values()) & set(postal_sandbox._by_order)
    async with session_scope() as s:
        assert not (
            await s.exec(select(Waybill).where(col(Waybill.application_id).in_(list(ids.values()))))
        ).all()
        completions = (
            await s.exec(
                select(BundleEvent).where(
                    BundleEvent.bundle_application_id == bid, BundleEvent.kind == "completed"
                )
            )
        ).all()
    assert len(completions) == 1 and tracking in (completions[0].note or "")
    # Running the job or the sweep again delivers nothing more.
    assert await life_event_applications.progress(bid) == "nothing"
    await tasks.bundle_sweep()
    assert postal_sandbox._by_order.get(bid) == tracking

    # The combined timeline: the life event's own steps and each department's, in time order.
    timeline = done["timeline"]
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    assert {e["department"] for e in timeline if e.get("department")} == set(DEPARTMENTS.values())
    assert timeline[0]["kind"] == "drafted" and timeline[-1]["kind"] == "completed"
    assert [e["kind"] for e in timeline].count("completed") == 1
    mine = (await client.get(f"{API}/bundle-applications", headers=r.headers)).json()["bundle_applications"]
    assert [b["id"] for b in mine] == [bid]
    # The resident heard twice about the life event: when it was submitted and when it ended;
    # not about each of the four items being submitted, accepted and approved.
    inbox = (await client.get("/api/v1/me/notifications", headers=r.headers)).json()["items"]
    texts = [n["text"] for n in inbox]
    assert sum("新生儿出生一件事" in t and "已提交" in t and "共4个事项" in t for t in texts) == 1, texts
    assert sum("新生儿出生一件事" in t and "已全部办结" in t for t in texts) == 1, texts
    numbers = {a["number"] for a in done["applications"]}
    assert not [t for t in texts if any(n in t for n in numbers)], texts

    # The parcel is signed for: the life event and its posted items are delivered.
    async with httpx.AsyncClient() as raw:
        resp = await raw.post(f"{live_url}{SANDBOX}/postal/v1/waybills/{tracking}/deliver")
    assert resp.status_code == 200
    await tasks.track_waybills()
    signed = await _bundle(client, r, bid)
    assert signed["delivered_at"] and _child(signed, HUKOU)["status"] == "delivered"


async def test_an_item_that_needs_a_refused_result_is_not_filed_and_the_rest_is_delivered_once(
    client: httpx.AsyncClient,
    login: LoginFn,
    gov_catalogue: None,
    live_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from columns.gov_services.config import get_config

    monkeypatch.setattr(get_config(), "postal_url", f"{live_url}{SANDBOX}/postal")
    r = await resident_born(client, login, birth=born_years_ago(28))
    health, _ = await make_staff(client, login, department=DEPARTMENTS[BIRTH_CERT])
    cards, _ = await make_staff(client, login, department=DEPARTMENTS[SOCIAL_CARD])
    resp = await client.post(
        f"{API}/bundle-applications",
        json={
            "bundle_code": NEWBORN,
            "client_key": uuid.uuid4().hex,
            "consent_groups": ["person", "certificate"],
        },
        headers=r.headers,
    )
    assert resp.status_code == 201 and resp.json()["missing_materials"] == [], resp.text
    bid = resp.json()["id"]
    assert (
        await client.put(
            f"{API}/bundle-applications/{bid}/fields", json={"fields": _newborn_fields()}, headers=r.headers
        )
    ).status_code == 200
    resp = await client.post(
        f"{API}/bundle-applications/{bid}/submit",
        json={"delivery": "免费邮寄", "address": ADDRESS},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    ids = {a["item_code"]: a["application_id"] for a in resp.json()["applications"]}
    rejected = await client.post(
        f"{API}/review/applications/{ids[BIRTH_CERT]}/reject",
        json={"reason": "助产机构无该新生儿出生记录"},
        headers=health,
    )
    assert rejected.status_code == 200, rejected.text

    async def given_up() -> bool:
        b = await _bundle(client, r, bid)
        return bool(
            _child(b, HUKOU)["status"] == "not_filed" and _child(b, INSURANCE)["status"] == "not_filed"
        )

    await wait_until(given_up, timeout=20)
    b = await _bundle(client, r, bid)
    assert b["status"] == "processing" and "出生医学证明首次签发" in (
        _child(b, HUKOU)["decision_reason"] or ""
    )
    await _decide(client, cards, ids[SOCIAL_CARD])

    async def completed() -> bool:
        return bool((await _bundle(client, r, bid))["status"] == "completed")

    await wait_until(completed, timeout=20)
    done = await _bundle(client, r, bid)
    assert _child(done, SOCIAL_CARD)["status"] == "posted" and done["tracking_no"]
    [completion] = [e for e in done["timeline"] if e["kind"] == "completed"]
    assert "1项已办结" in completion["note"] and "3项未办结" in completion["note"]


async def test_bad_input_unknown_bundle_unavailable_item_and_a_reused_client_key(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services.models import Bundle, BundleApplication

    r = await resident_born(client, login, birth=born_years_ago(35))
    unknown = await client.post(
        f"{API}/bundle-applications",
        json={"bundle_code": "BZ-YJS-999", "client_key": uuid.uuid4().hex},
        headers=r.headers,
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "gov_services.bundle_not_found"
    assert unknown.json()["title"] == "未找到该“一件事”"

    code = f"BZ-YJS-T{uuid.uuid4().hex[:6].upper()}"
    async with session_scope() as s:
        s.add(
            Bundle(
                code=code, name="测试一件事", summary="含已下线事项", item_codes=[BIRTH_CERT, "BZ-GONE-001"]
            )
        )
    guide = (await client.get(f"{API}/bundles/{code}")).json()
    assert guide["available"] is False and [i["available"] for i in guide["items"]] == [True, False]
    key = uuid.uuid4().hex
    gone = await client.post(
        f"{API}/bundle-applications", json={"bundle_code": code, "client_key": key}, headers=r.headers
    )
    assert gone.status_code == 409 and gone.json()["code"] == "gov_services.bundle_item_unavailable"
    assert gone.json()["items"] == ["BZ-GONE-001"]
    async with session_scope() as s:
        assert not (await s.exec(select(BundleApplication).where(BundleApplication.client_key == key))).all()

    first = await client.post(
        f"{API}/bundle-applications", json={"bundle_code": NEWBORN, "client_key": key}, headers=r.headers
    )
    assert first.status_code == 201
    reused = await client.post(
        f"{API}/bundle-applications", json={"bundle_code": BUSINESS, "client_key": key}, headers=r.headers
    )
    assert reused.status_code == 422
    # Someone else's life event is not found; an unknown consent group is refused.
    other = await resident_born(client, login, birth=born_years_ago(35))
    hidden = await client.get(f"{API}/bundle-applications/{first.json()['id']}", headers=other.headers)
    assert hidden.status_code == 404 and hidden.json()["code"] == "gov_services.bundle_application_not_found"
    bad_group = await client.post(
        f"{API}/bundle-applications/{first.json()['id']}/prefill",
        json={"groups": ["bank"]},
        headers=r.headers,
    )
    assert bad_group.status_code == 422
    # A material the life event does not have, or a file that is not what it claims, is refused.
    wrong = await client.post(
        f"{API}/bundle-applications/{first.json()['id']}/uploads",
        data={"material": "营业执照"},
        files={"file": ("x.jpg", jpeg(), "image/jpeg")},
        headers=r.headers,
    )
    assert wrong.status_code == 422
    fake = await client.post(
        f"{API}/bundle-applications/{first.json()['id']}/uploads",
        data={"material": "申请人居民身份证"},
        files={"file": ("x.pdf", b"not a pdf at all", "application/pdf")},
        headers=r.headers,
    )
    assert fake.status_code == 422 and fake.json()["code"] == "gov_services.upload_rejected"


async def test_a_business_start_up_files_seal_tax_and_social_insurance_with_the_new_licence(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await resident_born(
        client,
        login,
        birth=born_years_ago(33),
        certs=(
            ("resident_id_card", "居民身份证"),
            ("household_register", "居民户口簿"),
            ("real_estate_certificate", "不动产权证书"),
        ),
    )
    market, _ = await make_staff(client, login, department="亳州市市场监督管理局")
    resp = await client.post(
        f"{API}/bundle-applications",
        json={
            "bundle_code": BUSINESS,
            "client_key": uuid.uuid4().hex,
            "consent_groups": ["person", "certificate"],
        },
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    bid = resp.json()["id"]
    assert sorted(resp.json()["missing_materials"]) == ["公司章程", "法定代表人、董事、监事、经理任职文件"]
    for material in resp.json()["missing_materials"]:
        up = await client.post(
            f"{API}/bundle-applications/{bid}/uploads",
            data={"material": material},
            files={"file": ("doc.pdf", pdf(), "application/pdf")},
            headers=r.headers,
        )
        assert up.status_code == 201, up.text
    # The licence is the bundle's own result: it cannot be uploaded in its place.
    licence = await client.post(
        f"{API}/bundle-applications/{bid}/uploads",
        data={"material": "营业执照"},
        files={"file": ("l.pdf", pdf(), "application/pdf")},
        headers=r.headers,
    )
    assert licence.status_code == 422
    fields = {
        "company.name": "亳州测试药业有限公司",
        "company.registered_capital": "100",
        "company.business_scope": "中药材购销",
        "company.address": "亳州市谯城区药都大道1号",
    }
    assert (
        await client.put(
            f"{API}/bundle-applications/{bid}/fields", json={"fields": fields}, headers=r.headers
        )
    ).status_code == 200
    resp = await client.post(
        f"{API}/bundle-applications/{bid}/submit",
        json={"delivery": "免费邮寄", "address": ADDRESS},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    statuses = {a["item_code"]: a["status"] for a in resp.json()["applications"]}
    assert statuses == {
        "BZ-SJ-003": "submitted",
        "BZ-GA-006": "draft",
        "BZ-SW-001": "draft",
        "BZ-RS-007": "draft",
    }
    company = _child(resp.json(), "BZ-SJ-003")["application_id"]
    await _decide(client, market, company)

    async def filed() -> bool:
        b = await _bundle(client, r, bid)
        return all(a["status"] == "submitted" for a in b["applications"] if a["item_code"] != "BZ-SJ-003")

    await wait_until(filed, timeout=20)
    b = await _bundle(client, r, bid)
    licence_no = _child(b, "BZ-SJ-003")["result_cert_no"]
    for code in ("BZ-GA-006", "BZ-SW-001", "BZ-RS-007"):
        app = (
            await client.get(f"{API}/applications/{_child(b, code)['application_id']}", headers=r.headers)
        ).json()
        assert app["form"]["ecerts"]["营业执照"]["cert_no"] == licence_no
        assert {f["key"] for f in app["form"]["fields"]} >= {"company.name", "person.id_number"}


async def test_the_last_results_approved_at_once_deliver_once(
    client: httpx.AsyncClient,
    login: LoginFn,
    gov_catalogue: None,
    live_url: str,
    monkeypatch: pytest.MonkeyPatch,
    is_postgres: bool,
) -> None:
    """Three departments approve at the same moment while the progress job also runs by hand:
    one completion, one waybill. PostgreSQL only: SQLite has one writer."""
    import asyncio

    if not is_postgres:
        pytest.skip("concurrent writers need PostgreSQL")
    from app_api.core.db import session_scope
    from columns.gov_services import life_event_applications
    from columns.gov_services.config import get_config
    from columns.gov_services.models import BundleEvent
    from columns.gov_services.sandbox import postal as postal_sandbox

    monkeypatch.setattr(get_config(), "postal_url", f"{live_url}{SANDBOX}/postal")
    r = await resident_born(
        client,
        login,
        birth=born_years_ago(45),
        certs=(("resident_id_card", "居民身份证"), ("real_estate_certificate", "不动产权证书")),
    )
    staff = {
        code: (await make_staff(client, login, department=d))[0]
        for code, d in (
            ("BZ-SJ-003", "亳州市市场监督管理局"),
            ("BZ-GA-006", "亳州市公安局"),
            ("BZ-SW-001", "国家税务总局亳州市税务局"),
            ("BZ-RS-007", "亳州市人力资源和社会保障局"),
        )
    }
    bid = (
        await client.post(
            f"{API}/bundle-applications",
            json={
                "bundle_code": BUSINESS,
                "client_key": uuid.uuid4().hex,
                "consent_groups": ["person", "certificate"],
            },
            headers=r.headers,
        )
    ).json()["id"]
    for material in ("公司章程", "法定代表人、董事、监事、经理任职文件"):
        await client.post(
            f"{API}/bundle-applications/{bid}/uploads",
            data={"material": material},
            files={"file": ("doc.pdf", pdf(), "application/pdf")},
            headers=r.headers,
        )
    fields = {
        "company.name": "亳州并发测试有限公司",
        "company.registered_capital": "50",
        "company.business_scope": "软件开发",
        "company.address": "亳州市谯城区芍花路2号",
    }
    await client.put(f"{API}/bundle-applications/{bid}/fields", json={"fields": fields}, headers=r.headers)
    resp = await client.post(
        f"{API}/bundle-applications/{bid}/submit",
        json={"delivery": "免费邮寄", "address": ADDRESS},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    ids = {a["item_code"]: a["application_id"] for a in resp.json()["applications"]}
    await _decide(client, staff["BZ-SJ-003"], ids["BZ-SJ-003"])

    async def filed() -> bool:
        b = await _bundle(client, r, bid)
        return all(a["status"] == "submitted" for a in b["applications"] if a["item_code"] != "BZ-SJ-003")

    await wait_until(filed, timeout=20)
    last = [c for c in ids if c != "BZ-SJ-003"]
    for code in last:
        accepted = await client.post(
            f"{API}/review/applications/{ids[code]}/accept", json={}, headers=staff[code]
        )
        assert accepted.status_code == 200, accepted.text
    answers = await asyncio.gather(
        *(
            client.post(f"{API}/review/applications/{ids[code]}/approve", json={}, headers=staff[code])
            for code in last
        )
    )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    runs = await asyncio.gather(*(life_event_applications.progress(bid) for _ in range(3)))
    assert runs.count("completed") <= 1

    async def completed() -> bool:
        return bool((await _bundle(client, r, bid))["status"] == "completed")

    await wait_until(completed, timeout=20)
    done = await _bundle(client, r, bid)
    assert postal_sandbox._by_order.get(bid) == done["tracking_no"]
    assert {a["item_code"]: a["status"] for a in done["applications"]} == {
        "BZ-SJ-003": "posted",
        "BZ-GA-006": "posted",
        "BZ-SW-001": "posted",
        "BZ-RS-007": "approved",
    }
    async with session_scope() as s:
        completions = (
            await s.exec(
                select(BundleEvent).where(
                    BundleEvent.bundle_application_id == bid, BundleEvent.kind == "completed"
                )
            )
        ).all()
    assert len(completions) == 1
