"""One-tap applications end to end: login, search, consented prefill, uploads, review, e-certificate,
free postal delivery, rating; and everything that must be refused."""

from __future__ import annotations

import asyncio
import uuid
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
    ofd,
    pdf,
    png,
)
from tests.conftest import LoginFn

OLD_AGE = "BZ-MZ-001"  # 老年人优待证: e-certificate plus paper card, post or electronic
PHOTO = "近期免冠彩色证件照片"
ADDRESS = {"name": "张建国", "phone": "13800000001", "address": "安徽省亳州市谯城区魏武大道88号3栋2单元"}


async def _get(client: httpx.AsyncClient, r: Resident, app_id: str) -> dict[str, Any]:
    resp = await client.get(f"{API}/applications/{app_id}", headers=r.headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def _upload(
    client: httpx.AsyncClient,
    r: Resident,
    app_id: str,
    material: str,
    data: bytes,
    filename: str,
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    return await client.post(
        f"{API}/applications/{app_id}/uploads",
        data={"material": material},
        files={"file": (filename, data, content_type)},
        headers=r.headers,
    )


async def _ready_old_age_application(client: httpx.AsyncClient, r: Resident) -> str:
    app = await new_application(client, r, OLD_AGE)
    resp = await client.post(
        f"{API}/applications/{app['id']}/prefill",
        json={"groups": ["person", "certificate"]},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    resp = await _upload(client, r, app["id"], PHOTO, jpeg(), "photo.jpg", "image/jpeg")
    assert resp.status_code == 201, resp.text
    return str(app["id"])


async def _submitted(client: httpx.AsyncClient, r: Resident, delivery: str = "电子送达") -> str:
    app_id = await _ready_old_age_application(client, r)
    body: dict[str, Any] = {"delivery": delivery}
    if delivery == "免费邮寄":
        body["address"] = ADDRESS
    resp = await client.post(f"{API}/applications/{app_id}/submit", json=body, headers=r.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "submitted"
    return app_id


async def test_whole_path_from_login_to_posted_certificate_and_rating(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, live_url: str
) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.datahub.models import ECertificate
    from app_api.platform.datahub.service import id_hash
    from columns.gov_services import delivery
    from columns.gov_services.config import get_config

    get_config().postal_url = f"{live_url}{SANDBOX}/postal"
    r = await make_resident(client, login, level=2)
    reviewer, _ = await make_staff(client, login, department="谯城区民政局")

    # The resident finds the item by its pinyin initials and reads what will be filled.
    hits = (await client.get(f"{API}/items", params={"q": "lnz"})).json()["items"]
    assert hits[0]["code"] == OLD_AGE and hits[0]["name"] == "老年人优待证办理"
    preview = (await client.get(f"{API}/items/{OLD_AGE}/prefill")).json()["groups"]
    assert [g["group"] for g in preview] == ["person", "certificate"]
    assert "姓名" in [f["label"] for f in preview[0]["fields"]]

    app = await new_application(client, r, OLD_AGE)
    assert app["status"] == "draft" and app["item_version"] == 1
    assert PHOTO in app["missing_materials"]

    # Consent per group, then the form fills itself; the ID card comes by reference.
    resp = await client.post(
        f"{API}/applications/{app['id']}/prefill",
        json={"groups": ["person", "certificate"]},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    filled = {f["key"]: f["value"] for f in resp.json()["fields"]}
    assert filled["person.name"] == r.name
    assert filled["person.id_number"] != r.id_number and filled["person.id_number"].endswith(r.id_number[-4:])
    assert resp.json()["ecerts"]["申请人居民身份证"]["title"] == "居民身份证"
    consents = (await client.get("/api/v1/me/consents", headers=r.headers)).json()["consents"]
    assert {tuple(c["scopes"]) for c in consents if c["purpose"] == "gov_services.prefill"} >= {
        ("population.basic",),
        ("certificates",),
    }
    assert (await _get(client, r, app["id"]))["missing_materials"] == [PHOTO]

    # Submitting without the photo is refused and says what is missing.
    resp = await client.post(f"{API}/applications/{app['id']}/submit", json={}, headers=r.headers)
    assert resp.status_code == 422 and resp.json()["code"] == "gov_services.materials_missing"
    assert resp.json()["missing"] == [PHOTO]

    assert (await _upload(client, r, app["id"], PHOTO, jpeg(), "me.jpg", "image/jpeg")).status_code == 201
    resp = await client.post(
        f"{API}/applications/{app['id']}/submit",
        json={"delivery": "免费邮寄", "address": ADDRESS},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "submitted" and resp.json()["due_at"]

    # The department's reviewer works the queue.
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    assert app["id"] in [a["id"] for a in queue]
    assert (
        await client.post(f"{API}/review/applications/{app['id']}/accept", headers=reviewer)
    ).status_code == 200
    resp = await client.post(f"{API}/review/applications/{app['id']}/approve", json={}, headers=reviewer)
    assert resp.status_code == 200, resp.text
    cert_no = resp.json()["result_cert_no"]
    assert cert_no

    # The e-certificate is in the resident's records.
    async with session_scope() as s:
        certs = (
            await s.exec(select(ECertificate).where(ECertificate.holder_id_hash == id_hash(r.id_number)))
        ).all()
    assert any(
        c.title == "老年人优待证" and c.cert_no == cert_no and c.issuer == "谯城区民政局" for c in certs
    )

    # The paper card goes out by post through the carrier's API (its sandbox, over loopback HTTP).
    for _ in range(100):
        detail = await _get(client, r, app["id"])
        if detail["status"] == "posted":
            break
        await asyncio.sleep(0.05)
    assert detail["status"] == "posted" and detail["tracking_no"]
    async with httpx.AsyncClient() as raw:
        resp = await raw.post(f"{live_url}{SANDBOX}/postal/v1/waybills/{detail['tracking_no']}/deliver")
        assert resp.status_code == 200
    async with session_scope() as s:
        assert await delivery.track_waybills(s) >= 1
    assert (await _get(client, r, app["id"]))["status"] == "delivered"

    resp = await client.post(f"{API}/applications/{app['id']}/rating", json={"score": 5}, headers=r.headers)
    assert resp.status_code == 201 and resp.json()["follow_up"] == "none"
    again = await client.post(f"{API}/applications/{app['id']}/rating", json={"score": 1}, headers=r.headers)
    assert again.status_code == 409 and again.json()["code"] == "gov_services.already_rated"

    kinds = [e["kind"] for e in (await _get(client, r, app["id"]))["timeline"]]
    for k in (
        "drafted",
        "prefilled",
        "uploaded",
        "submitted",
        "accepted",
        "approved",
        "posted",
        "delivered",
        "rated",
    ):
        assert k in kinds, kinds
    assert (
        kinds.index("submitted") < kinds.index("accepted") < kinds.index("approved") < kinds.index("posted")
    )

    notes = (await client.get("/api/v1/me/notifications", headers=r.headers)).json()
    texts = " ".join(n["text"] for n in notes["items"])
    assert "已提交" in texts and "已办结" in texts and detail["tracking_no"] in texts


async def test_resident_cannot_read_or_touch_another_residents_application(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    owner = await make_resident(client, login, level=2)
    other = await make_resident(client, login, level=2)
    app = await new_application(client, owner, OLD_AGE)
    for method, path, kwargs in [
        ("GET", f"/applications/{app['id']}", {}),
        ("POST", f"/applications/{app['id']}/prefill", {"json": {"groups": ["person"]}}),
        ("POST", f"/applications/{app['id']}/submit", {"json": {}}),
        ("POST", f"/applications/{app['id']}/rating", {"json": {"score": 1}}),
    ]:
        resp = await client.request(method, API + path, headers=other.headers, **kwargs)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["code"] == "gov_services.application_not_found"
    resp = await _upload(client, other, app["id"], PHOTO, jpeg(), "x.jpg")
    assert resp.status_code == 404
    assert app["id"] not in [
        a["id"]
        for a in (await client.get(f"{API}/applications", headers=other.headers)).json()["applications"]
    ]
    # Nothing happened to the owner's draft.
    detail = await _get(client, owner, app["id"])
    assert detail["status"] == "draft" and detail["uploads"] == [] and detail["form"]["fields"] == []


async def test_reviewer_outside_the_department_is_refused(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await make_resident(client, login, level=2)
    app_id = await _submitted(client, r)
    police, _ = await make_staff(client, login, department="谯城区公安分局")
    for action, body in [
        ("accept", None),
        ("approve", {}),
        ("reject", {"reason": "材料不全"}),
        ("supplement", {"reason": "照片不清晰"}),
    ]:
        resp = await client.post(f"{API}/review/applications/{app_id}/{action}", json=body, headers=police)
        assert resp.status_code == 403, resp.text
        assert resp.json()["code"] == "gov_services.outside_department"
    resp = await client.get(f"{API}/review/applications/{app_id}", headers=police)
    assert resp.status_code == 403
    assert app_id not in [
        a["id"] for a in (await client.get(f"{API}/review/queue", headers=police)).json()["applications"]
    ]
    # A resident is not a reviewer at all.
    resp = await client.post(f"{API}/review/applications/{app_id}/accept", headers=r.headers)
    assert resp.status_code == 403 and resp.json()["code"] == "auth.forbidden"
    assert (await _get(client, r, app_id))["status"] == "submitted"


async def test_rejection_carries_its_reason_to_the_resident(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await make_resident(client, login, level=2)
    app_id = await _submitted(client, r)
    reviewer, _ = await make_staff(client, login, department="谯城区民政局")
    resp = await client.post(
        f"{API}/review/applications/{app_id}/reject", json={"reason": "x"}, headers=reviewer
    )
    assert resp.status_code == 422  # a reason of one character is not a reason
    resp = await client.post(
        f"{API}/review/applications/{app_id}/reject", json={"reason": "申请人未满60周岁"}, headers=reviewer
    )
    assert resp.status_code == 200 and resp.json()["status"] == "rejected"
    detail = await _get(client, r, app_id)
    assert detail["decision_reason"] == "申请人未满60周岁"
    assert detail["timeline"][-1]["note"] == "申请人未满60周岁"
    # Decided applications cannot be approved afterwards.
    resp = await client.post(f"{API}/review/applications/{app_id}/approve", json={}, headers=reviewer)
    assert resp.status_code == 409 and resp.json()["code"] == "gov_services.invalid_state"


async def test_double_create_and_double_submit_make_one_application(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services.models import Application, Event

    r = await make_resident(client, login, level=2)
    key = uuid.uuid4().hex
    first = await client.post(
        f"{API}/applications", json={"item_code": OLD_AGE, "client_key": key}, headers=r.headers
    )
    second = await client.post(
        f"{API}/applications", json={"item_code": OLD_AGE, "client_key": key}, headers=r.headers
    )
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    app_id = first.json()["id"]
    await client.post(
        f"{API}/applications/{app_id}/prefill", json={"groups": ["person", "certificate"]}, headers=r.headers
    )
    await _upload(client, r, app_id, PHOTO, jpeg(), "p.jpg")
    results = await asyncio.gather(
        *[client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers) for _ in range(3)]
    )
    assert all(x.status_code == 200 and x.json()["status"] == "submitted" for x in results), [
        x.text for x in results
    ]
    assert len({x.json()["submitted_at"] for x in results}) == 1
    async with session_scope() as s:
        apps = (await s.exec(select(Application).where(Application.applicant_id == r.account_id))).all()
        events = (
            await s.exec(select(Event).where(Event.application_id == app_id, Event.kind == "submitted"))
        ).all()
    assert len(apps) == 1 and len(events) == 1


async def test_identity_level_and_delivery_rules(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    low = await make_resident(client, login, level=1)
    resp = await client.post(
        f"{API}/applications",
        json={"item_code": OLD_AGE, "client_key": uuid.uuid4().hex},
        headers=low.headers,
    )
    assert resp.status_code == 403 and resp.json()["code"] == "identity.level_required"
    assert resp.json()["level_required"] == 2
    r = await make_resident(client, login, level=2)
    app_id = await _ready_old_age_application(client, r)
    bad = await client.post(
        f"{API}/applications/{app_id}/submit", json={"delivery": "免费邮寄"}, headers=r.headers
    )
    assert bad.status_code == 422 and bad.json()["code"] == "gov_services.delivery_invalid"
    bad = await client.post(
        f"{API}/applications/{app_id}/submit", json={"delivery": "快递到付"}, headers=r.headers
    )
    assert bad.status_code == 422 and bad.json()["allowed"] == ["电子送达", "免费邮寄"]
    assert (await _get(client, r, app_id))["status"] == "draft"
    resp = await client.post(
        f"{API}/applications",
        json={"item_code": "NO-SUCH-1", "client_key": uuid.uuid4().hex},
        headers=r.headers,
    )
    assert resp.status_code == 404 and resp.json()["code"] == "gov_services.item_not_found"


@pytest.mark.parametrize(
    ("data", "filename", "ctype", "status", "detail"),
    [
        # A PNG declared as a PDF: the declared type lies (a lying file name alone is renamed, see
        # test_gov_upload_names).
        (png(), "scan.pdf", "application/pdf", 422, "声明的类型不符"),
        (pdf(), "photo.jpg", "image/jpeg", 422, "声明的类型不符"),
        (pdf(), "scan", "image/png", 422, "声明的类型不符"),
        (b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200, "virus.pdf", "application/pdf", 422, "仅支持"),
        (b"", "empty.pdf", "application/pdf", 422, "文件为空"),
        (ofd(with_root=False), "doc.ofd", "application/ofd", 422, "仅支持"),  # a ZIP that is no OFD
        (b"%PDF-1.4\n" + b"0" * (64 * 1024), "big.pdf", "application/pdf", 413, "不能超过"),
    ],
)
async def test_lying_empty_and_oversized_uploads_are_refused(
    client: httpx.AsyncClient,
    login: LoginFn,
    gov_catalogue: None,
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    filename: str,
    ctype: str,
    status: int,
    detail: str,
) -> None:
    from columns.gov_services.config import get_config

    monkeypatch.setattr(get_config(), "upload_max_bytes", 32 * 1024)
    r = await make_resident(client, login, level=2)
    app = await new_application(client, r, OLD_AGE)
    resp = await _upload(client, r, app["id"], PHOTO, data, filename, ctype)
    assert resp.status_code == status, resp.text
    assert detail in resp.json()["detail"]
    assert (await _get(client, r, app["id"]))["uploads"] == []


async def test_good_uploads_are_kept_encrypted_and_by_kind(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services.config import get_config
    from columns.gov_services.models import Upload
    from columns.gov_services.storage import get_storage

    r = await make_resident(client, login, level=2)
    app = await new_application(client, r, OLD_AGE)
    for data, name in [(jpeg(), "a.jpeg"), (png(), "b.png"), (pdf(), "c.pdf"), (ofd(), "d.ofd")]:
        resp = await _upload(client, r, app["id"], PHOTO, data, name)
        assert resp.status_code == 201, resp.text
    kinds = [u["kind"] for u in (await _get(client, r, app["id"]))["uploads"]]
    assert sorted(kinds) == ["jpeg", "ofd", "pdf", "png"]
    async with session_scope() as s:
        up = (
            await s.exec(select(Upload).where(Upload.application_id == app["id"], Upload.kind == "pdf"))
        ).one()
    raw = (get_config().upload_dir / up.storage_key).read_bytes()
    assert b"%PDF" not in raw  # encrypted at rest
    assert await get_storage().get(up.storage_key) == pdf()
    resp = await _upload(client, r, app["id"], "不存在的材料", pdf(), "x.pdf")
    assert resp.status_code == 422


async def test_application_number_collision_draws_again(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from columns.gov_services import applications

    r = await make_resident(client, login, level=2)
    first = await new_application(client, r, OLD_AGE)
    fresh = "2026" + uuid.uuid4().hex[:12].translate(str.maketrans("abcdef", "123456"))
    numbers = iter([first["number"], fresh])
    monkeypatch.setattr(applications, "_new_number", lambda: next(numbers))
    second = await new_application(client, r, OLD_AGE)
    assert second["number"] == fresh and second["id"] != first["id"]
