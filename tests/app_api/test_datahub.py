"""The data center gateway: consent first, every read logged, local and HTTP adapters agree."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import httpx
import pytest
from sqlmodel import select

from app_api.core.crypto import encrypt_bytes, encrypt_str
from app_api.core.db import session_scope
from app_api.platform.consent import service as consent
from app_api.platform.datahub.citizen_id import make, problem
from app_api.platform.datahub.models import PopulationRecord
from app_api.platform.datahub.service import Datahub, HttpDatahub, LocalDatahub, RecordNotFound, id_hash
from tests.citizens import new_id_number
from tests.conftest import LoginFn


async def make_person(photo: bytes | None = b"\xff\xd8fakejpeg") -> str:

    idn = new_id_number("341602", dt.date(1960, 1, 1))
    async with session_scope() as s:
        existing = (
            await s.exec(select(PopulationRecord).where(PopulationRecord.id_number_hash == id_hash(idn)))
        ).first()
        if existing is None:
            s.add(
                PopulationRecord(
                    id_number_hash=id_hash(idn),
                    id_number_enc=encrypt_str(idn, aad="id_number"),
                    name_enc=encrypt_str("赵测试", aad="name"),
                    gender="男",
                    birth_date=dt.date(1960, 1, 1),
                    address_enc=encrypt_str("亳州市谯城区测试路1号", aad="address"),
                    household="谯城区",
                    photo_enc=encrypt_bytes(photo, aad="id_photo") if photo else None,
                )
            )
    return idn


def _old_age_card(idn: str, cert_no: str, issued_on: dt.date, valid_until: dt.date, source_ref: str) -> Any:
    """An order for an old-age card (老年人优待证) to write into the library."""
    from app_api.platform.datahub.service import IssueOrder

    return IssueOrder(
        cert_no=cert_no,
        holder_id_number=idn,
        cert_type="old_age_card",
        title="老年人优待证",
        issuer="谯城区民政局",
        issued_on=issued_on,
        valid_until=valid_until,
        data={"item": "BZ-MZ-001"},
        source_ref=source_ref,
    )


def test_citizen_id_rules() -> None:
    good = make("341602", dt.date(1990, 1, 1), 123)
    assert problem(good) is None
    assert "校验位" in (problem(good[:17] + ("0" if good[17] != "0" else "1")) or "")
    assert "出生日期" in (problem("341602199002301234") or "")
    assert "地区码" in (problem("991602199001011234") or "")
    assert "18位" in (problem("34160219900101") or "")
    # The same number in full-width (or another script's) digits is another string with the same
    # meaning: it would pass the check digit (int() reads it) and slip past one-ID-per-account.
    wide = good[:2] + good[2:].translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert int(wide[2]) == int(good[2]) and "18位" in (problem(wide) or "")
    arabic = good[:2] + good[2:].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert "18位" in (problem(arabic) or "")


async def test_read_requires_live_consent_and_is_logged(client: httpx.AsyncClient, login: LoginFn) -> None:
    h = await login()
    me = (await client.get("/api/v1/me", headers=h)).json()
    idn = await make_person()
    hub = Datahub(LocalDatahub())
    async with session_scope() as s:
        with pytest.raises(consent.ConsentRequired):
            await hub.person(
                s,
                id_number=idn,
                accessor_id=me["id"],
                purpose="gov.prefill",
                consent_id=None,
                subject_account_id=me["id"],
            )
    async with session_scope() as s:
        c = await consent.grant(s, account_id=me["id"], purpose="gov.prefill", scopes=["population.basic"])
        cid = c.id
    async with session_scope() as s:
        rec = await hub.person(
            s,
            id_number=idn,
            accessor_id=me["id"],
            purpose="gov.prefill",
            consent_id=cid,
            subject_account_id=me["id"],
        )
        assert rec.name == "赵测试" and rec.address.startswith("亳州市")
        # A consent for one purpose does not cover another.
        with pytest.raises(consent.ConsentRequired):
            await hub.person(
                s,
                id_number=idn,
                accessor_id=me["id"],
                purpose="loan.share",
                consent_id=cid,
                subject_account_id=me["id"],
            )
    log = (await client.get("/api/v1/me/data-access", headers=h)).json()["items"]
    assert log[0]["purpose"] == "gov.prefill" and log[0]["consent_id"] == cid and log[0]["by_self"]
    # Withdrawn: no more reads.
    r = await client.delete(f"/api/v1/me/consents/{cid}", headers=h)
    assert r.status_code == 200 and r.json()["active"] is False
    async with session_scope() as s:
        with pytest.raises(consent.ConsentRequired):
            await hub.person(
                s,
                id_number=idn,
                accessor_id=me["id"],
                purpose="gov.prefill",
                consent_id=cid,
                subject_account_id=me["id"],
            )
    # Another resident cannot withdraw (or see) this consent.
    other = await login()
    assert (await client.delete(f"/api/v1/me/consents/{cid}", headers=other)).status_code == 404
    assert all(
        x["id"] != cid for x in (await client.get("/api/v1/me/consents", headers=other)).json()["consents"]
    )


async def test_http_adapter_against_the_exchange_sandbox(
    live_url: str, client: httpx.AsyncClient, login: LoginFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app_api.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "datahub_url", f"{live_url}/sandbox/datahub")
    idn = await make_person(photo=b"photo-bytes")
    async with session_scope() as s:
        via_http = await HttpDatahub().person(s, idn)
        local = await LocalDatahub().person(s, idn)
        assert via_http == local and via_http is not None and via_http.photo == b"photo-bytes"
        assert await HttpDatahub().person(s, make("341602", dt.date(1999, 9, 9), 999)) is None
        assert await HttpDatahub().certificates(s, idn) == []


async def test_exchange_sandbox_refuses_bad_signature(live_url: str) -> None:
    import time

    async with httpx.AsyncClient() as c:
        r = await c.post(
            f"{live_url}/sandbox/datahub/v1/population/query",
            json={"id_number": "x"},
            headers={"x-timestamp": str(int(time.time())), "x-nonce": "n", "x-signature": "forged"},
        )
        assert r.status_code == 401 and r.json()["code"] == "40102"
        r = await c.post(
            f"{live_url}/sandbox/datahub/v1/population/query",
            json={"id_number": "x"},
            headers={"x-timestamp": "1", "x-nonce": "n", "x-signature": "forged"},
        )
        assert r.status_code == 401 and r.json()["code"] == "40101"


async def test_unknown_person_is_a_clear_error(login: LoginFn, client: httpx.AsyncClient) -> None:
    h = await login()
    me = (await client.get("/api/v1/me", headers=h)).json()
    async with session_scope() as s:
        c = await consent.grant(s, account_id=me["id"], purpose="identity.l2", scopes=["population.basic"])
    async with session_scope() as s:
        with pytest.raises(RecordNotFound):
            await Datahub(LocalDatahub()).person(
                s,
                id_number=make("341602", dt.date(1998, 8, 8), 1),
                accessor_id=me["id"],
                purpose="identity.l2",
                consent_id=c.id,
                subject_account_id=me["id"],
            )


async def test_exchange_certificates_come_from_its_own_library(
    live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox answers certificates from its library, never from the app's tables; issuing is
    idempotent by number, and a number reused for other contents is refused."""
    import secrets

    from app_api.core.settings import get_settings
    from app_api.platform.datahub.errors import LibraryConflict
    from app_api.platform.datahub.models import ECertificate
    from app_api.platform.datahub.service import IssueOrder

    monkeypatch.setattr(get_settings(), "datahub_url", f"{live_url}/sandbox/datahub")
    idn = await make_person()
    async with session_scope() as s:
        s.add(
            ECertificate(
                holder_id_hash=id_hash(idn),
                cert_type="household_register",
                cert_no="LOCAL" + secrets.token_hex(6),
                title="居民户口簿",
                issuer="亳州市公安局",
                issued_on=dt.date(2010, 1, 1),
            )
        )
    order = _old_age_card(
        idn, "T" + secrets.token_hex(8).upper(), dt.date(2028, 2, 29), dt.date(2033, 2, 28), "app-1"
    )
    async with session_scope() as s:
        assert [c.title for c in await LocalDatahub().certificates(s, idn)] == ["居民户口簿"]
        assert await HttpDatahub().certificates(s, idn) == []
        await HttpDatahub().issue_certificate(s, order)
        await HttpDatahub().issue_certificate(s, order)
        held = await HttpDatahub().certificates(s, idn)
        assert [(c.cert_no, c.valid_until, c.status) for c in held] == [
            (order.cert_no, order.valid_until, "valid")
        ]
        with pytest.raises(LibraryConflict):
            await HttpDatahub().issue_certificate(s, IssueOrder(**{**order.__dict__, "title": "另一证照"}))
        await HttpDatahub().revoke_certificate(s, order.cert_no, "信息有误")
        assert [c.status for c in await HttpDatahub().certificates(s, idn)] == ["revoked"]
        with pytest.raises(LibraryConflict):
            await HttpDatahub().revoke_certificate(s, "NOSUCH" + order.cert_no, "信息有误")


async def test_a_wrong_data_center_url_is_a_failure_not_an_unknown_person(
    live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404 that is not the protocol's "no such record" (40400), e.g. a misconfigured URL, is the
    data center failing: residents are not told they are unknown, and a certificate order is not
    taken as delivered (its job retries)."""
    from app_api.core.errors import UpstreamError
    from app_api.core.settings import get_settings
    from app_api.platform.datahub.service import IssueOrder

    idn = await make_person()
    monkeypatch.setattr(get_settings(), "datahub_url", f"{live_url}/sandbox/datahub")
    async with session_scope() as s:
        assert await HttpDatahub().person(s, idn) is not None
        monkeypatch.setattr(get_settings(), "datahub_url", f"{live_url}/sandbox/no-such-datahub")
        with pytest.raises(UpstreamError):
            await HttpDatahub().person(s, idn)
        order = IssueOrder(
            cert_no="W404" + idn[-6:],
            holder_id_number=idn,
            cert_type="old_age_card",
            title="老年人优待证",
            issuer="谯城区民政局",
            issued_on=dt.date(2026, 12, 3),
            valid_until=None,
            data={},
            source_ref="app-404",
        )
        with pytest.raises(UpstreamError):
            await HttpDatahub().issue_certificate(s, order)


async def test_a_data_center_answer_with_a_new_field_is_read_a_malformed_one_is_a_clear_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The data center's answers (served here by a transport standing for it): an added field is
    ignored; a record missing a field or with a malformed date is a 502, never a 500."""
    import json as jsonlib

    from app_api.core.errors import UpstreamError
    from app_api.platform.datahub import service

    idn = make("341602", dt.date(1950, 5, 1), 123)
    person = {"id_number": idn, "name": "张秀英", "gender": "女", "birth_date": "1950-05-01",
              "ethnicity": "汉", "address": "亳州市谯城区", "household": "亳州市谯城区薛阁街道",
              "marital_status": "已婚"}  # fmt: skip
    answers: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=jsonlib.dumps({"code": "0", "msg": "ok", "data": answers[0]}))

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    monkeypatch.setattr(service, "http_client", lambda: client)
    async with session_scope() as s:
        assert set(person) == {f.name for f in dataclasses.fields(service.PersonRecord)} - {"photo"}
        answers[:] = [{**person, "education": "大学专科"}]  # a field this version does not know
        got = await HttpDatahub().person(s, idn)
        assert got is not None and got.birth_date == dt.date(1950, 5, 1)
        for broken in ({**answers[0], "birth_date": "1950年5月1日"}, {"id_number": idn}):
            answers[:] = [broken]
            with pytest.raises(UpstreamError):
                await HttpDatahub().person(s, idn)
    await client.aclose()


async def _local_certificate(idn: str, title: str, **kw: Any) -> str:
    import secrets

    from app_api.platform.datahub.models import ECertificate

    cert_no = "C" + secrets.token_hex(8).upper()
    async with session_scope() as s:
        s.add(
            ECertificate(
                holder_id_hash=id_hash(idn),
                cert_type=kw.pop("cert_type", "household_register"),
                cert_no=cert_no,
                title=title,
                issuer="亳州市公安局",
                issued_on=dt.date(2015, 3, 1),
                **kw,
            )
        )
    return cert_no


async def test_one_read_of_the_person_and_certificates_answers_what_the_two_reads_answer() -> None:
    """The local records in one statement: the person with their photo, the issued certificates
    (a revoked one shown revoked, one not yet in the library left out), nothing of anyone else."""
    from app_api.core.db import utcnow

    idn = await make_person(photo=b"photo-bytes")
    valid = await _local_certificate(
        idn, "居民户口簿", valid_until=dt.date(2035, 3, 1), data={"户号": "0012345"}
    )
    revoked = await _local_certificate(
        idn, "居民身份证", cert_type="resident_id_card", revoked_at=utcnow(), revoke_reason="换领"
    )
    await _local_certificate(idn, "老年人优待证", cert_type="old_age_card", state="pending")
    other = await make_person()
    await _local_certificate(other, "居民户口簿")
    local = LocalDatahub()
    async with session_scope() as s:
        person, certs = await local.person_and_certificates(s, idn)
        assert person == await local.person(s, idn)
        assert person is not None and person.name == "赵测试" and person.photo == b"photo-bytes"
        assert sorted(certs, key=lambda c: c.cert_no) == sorted(
            await local.certificates(s, idn), key=lambda c: c.cert_no
        )
        by_no = {c.cert_no: c for c in certs}
        assert by_no.keys() == {valid, revoked}
        assert by_no[valid].data == {"户号": "0012345"} and by_no[valid].valid_until == dt.date(2035, 3, 1)
        assert (by_no[valid].status, by_no[revoked].status) == ("valid", "revoked")
        # Certificates without a population record, and a person without certificates.
        stranger = make("341602", dt.date(1997, 7, 7), 777)
        held = await _local_certificate(stranger, "居民户口簿")
        assert [c.cert_no for c in (await local.person_and_certificates(s, stranger))[1]] == [held]
        assert (await local.person_and_certificates(s, stranger))[0] is None
        bare = await make_person(photo=None)
        person, certs = await local.person_and_certificates(s, bare)
        assert person is not None and person.photo is None and certs == []


async def test_the_data_center_is_asked_both_queries_at_once_and_either_failing_fails_the_read(
    live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app_api.core.errors import UpstreamError
    from app_api.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "datahub_url", f"{live_url}/sandbox/datahub")
    idn = await make_person(photo=b"photo-bytes")
    order = _old_age_card(idn, "PC" + idn[-8:] + "X", dt.date(2026, 3, 1), dt.date(2031, 2, 28), "app-pc")
    hub = HttpDatahub()
    async with session_scope() as s:
        await hub.issue_certificate(s, order)
        person, certs = await hub.person_and_certificates(s, idn)
        assert person == await hub.person(s, idn) and person is not None and person.photo == b"photo-bytes"
        assert certs == await hub.certificates(s, idn)
        assert [(c.cert_no, c.title, c.status) for c in certs] == [(order.cert_no, "老年人优待证", "valid")]
        monkeypatch.setattr(get_settings(), "datahub_url", f"{live_url}/sandbox/no-such-datahub")
        with pytest.raises(UpstreamError):
            await hub.person_and_certificates(s, idn)


async def test_the_combined_read_needs_both_consents_and_logs_each_read(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    h = await login()
    me = (await client.get("/api/v1/me", headers=h)).json()
    idn = await make_person()
    await _local_certificate(idn, "居民户口簿")
    hub = Datahub(LocalDatahub())
    async with session_scope() as s:
        person_only = await consent.grant(
            s, account_id=me["id"], purpose="gov.prefill", scopes=["population.basic"]
        )
        ids = (person_only.id,)
    read = {
        "id_number": idn,
        "accessor_id": me["id"],
        "purpose": "gov.prefill",
        "subject_account_id": me["id"],
    }
    async with session_scope() as s:
        # The certificates' consent missing (or one for the population record only): nothing is read.
        for certificate_consent in (None, ids[0]):
            with pytest.raises(consent.ConsentRequired):
                await hub.person_and_certificates(
                    s, **read, person_consent_id=ids[0], certificate_consent_id=certificate_consent
                )
    assert (await client.get("/api/v1/me/data-access", headers=h)).json()["items"] == []
    async with session_scope() as s:
        certs_consent = await consent.grant(
            s, account_id=me["id"], purpose="gov.prefill", scopes=["certificates"]
        )
        cid = certs_consent.id
    async with session_scope() as s:
        person, certs = await hub.person_and_certificates(
            s, **read, person_consent_id=ids[0], certificate_consent_id=cid
        )
        assert person.name == "赵测试" and [c.title for c in certs] == ["居民户口簿"]
    log = (await client.get("/api/v1/me/data-access", headers=h)).json()["items"]
    assert sorted((x["record_type"], x["consent_id"], x["found"], x["by_self"]) for x in log) == [
        ("certificate", cid, True, True),
        ("population", ids[0], True, True),
    ]
    # No population record: the resident is told so, and both reads were still what happened.
    async with session_scope() as s:
        with pytest.raises(RecordNotFound):
            await hub.person_and_certificates(
                s,
                **{**read, "id_number": make("341602", dt.date(1996, 6, 6), 666)},
                person_consent_id=ids[0],
                certificate_consent_id=cid,
            )
