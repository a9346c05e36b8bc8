"""Upload file names as the reviewer sees them: no path, no control or bidi characters, NFC, a capped
length and an extension that says what the bytes are, whether the resident or an agent uploaded."""

from __future__ import annotations

import unicodedata
from typing import Any

import httpx
import pytest

from tests.app_api.agents_helpers import ResidentCtx, make_agent, sms_mandate
from tests.columns.gov_services.conftest import (
    API,
    Resident,
    jpeg,
    make_resident,
    make_staff,
    new_application,
    png,
)
from tests.conftest import LoginFn

OLD_AGE = "BZ-MZ-001"
PHOTO = "近期免冠彩色证件照片"
DEPARTMENT = "谯城区民政局"

# (name sent, declared type, what the reviewer sees)
CASES = [
    ("../../../../etc/passwd", "image/jpeg", "passwd.jpg"),
    ("..\\..\\Windows\\system.ini", "application/octet-stream", "system.jpg"),
    ("证件照\u202egpj.exe", "image/jpeg", "证件照gpj.jpg"),  # right-to-left override: "证件照exe.jpg"
    ("\u2066scan\u2069\u200f\u200b.jpeg", "image/jpeg", "scan.jpeg"),
    ("Zoe\u0301 photo.jpg", "image/jpeg", "Zo\u00e9 photo.jpg"),  # NFC
    ("photo.pdf", "application/octet-stream", "photo.jpg"),  # a JPEG calling itself a PDF
    ("a\u2028b\u00adc \ufeffd.JPG", "image/jpeg", "a bc d.jpg"),  # line separator, soft hyphen, BOM
    ("uploads/ .jpg", "image/jpeg", f"{PHOTO}.jpg"),  # nothing left but the extension
]
LONG = "长" * 1000 + ".jpg"


async def _prefilled(client: httpx.AsyncClient, r: Resident) -> str:
    app = await new_application(client, r, OLD_AGE)
    resp = await client.post(
        f"{API}/applications/{app['id']}/prefill",
        json={"groups": ["person", "certificate"]},
        headers=r.headers,
    )
    assert resp.status_code == 200, resp.text
    return str(app["id"])


async def _reviewer_sees(client: httpx.AsyncClient, login: LoginFn, r: Resident, app_id: str) -> list[Any]:
    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200, resp.text
    reviewer, _ = await make_staff(client, login, department=DEPARTMENT)
    resp = await client.get(f"{API}/review/applications/{app_id}", headers=reviewer)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["uploads"])


def _assert_clean(name: str) -> None:
    assert "/" not in name and "\\" not in name and len(name) <= 100
    assert unicodedata.is_normalized("NFC", name)
    assert not [c for c in name if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}]


async def test_resident_uploads_are_shown_to_the_reviewer_under_clean_honest_names(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await make_resident(client, login, level=2)
    app_id = await _prefilled(client, r)
    for name, ctype, _ in [*CASES, (LONG, "image/jpeg", "")]:
        resp = await client.post(
            f"{API}/applications/{app_id}/uploads",
            data={"material": PHOTO},
            files={"file": (name, jpeg(), ctype)},
            headers=r.headers,
        )
        assert resp.status_code == 201, (name, resp.text)
    shown = [u["filename"] for u in await _reviewer_sees(client, login, r, app_id)]
    assert len(shown) == len(CASES) + 1
    for _, _, expected in CASES:
        assert expected in shown, (expected, shown)
    long_name = next(n for n in shown if n.startswith("长"))
    assert len(long_name) == 100 and long_name == "长" * 96 + ".jpg"
    for name in shown:
        _assert_clean(name)


async def test_a_png_named_like_a_pdf_is_shown_as_png_and_kept_by_its_content(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await make_resident(client, login, level=2)
    app_id = await _prefilled(client, r)
    resp = await client.post(
        f"{API}/applications/{app_id}/uploads",
        data={"material": PHOTO},
        files={"file": ("../scan.pdf", png(), "image/png")},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["filename"] == "scan.png" and resp.json()["kind"] == "png"
    # The stored object is still keyed by the application and upload id, never by the name.
    from app_api.core.db import session_scope
    from columns.gov_services.models import Upload

    async with session_scope() as s:
        upload = await s.get(Upload, resp.json()["id"])
        assert upload is not None
        assert upload.storage_key == f"{app_id}/{upload.id}.png"


@pytest.mark.parametrize(("name", "ctype", "expected"), CASES[:4])
async def test_agent_uploads_are_shown_to_the_reviewer_under_clean_honest_names(
    client: httpx.AsyncClient,
    login: LoginFn,
    gov_catalogue: None,
    name: str,
    ctype: str,
    expected: str,
) -> None:
    r = await make_resident(client, login, level=2)
    agent = await make_agent(client, login)
    await sms_mandate(
        client, agent, ResidentCtx(r.headers, r.account_id, r.phone, r.id_number), scopes=["upload"]
    )
    app_id = await _prefilled(client, r)
    resp = await client.post(
        f"/api/v1/agent/residents/{r.account_id}/applications/{app_id}/materials",
        data={"material": PHOTO},
        files={"file": (name, jpeg(), ctype)},
        headers=agent.headers,
    )
    assert resp.status_code == 201, resp.text
    uploads = await _reviewer_sees(client, login, r, app_id)
    assert [u["filename"] for u in uploads] == [expected]
    _assert_clean(uploads[0]["filename"])
