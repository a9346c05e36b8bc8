"""The gateway to the city data center: population, legal-person and e-certificate records.

Two adapters behind one contract: ``LocalDatahub`` over tables in our database (the embedded
default, seeded), and ``HttpDatahub`` speaking the project's proposed data-center protocol
(``docs/adapters/datahub.yaml``; a city's integrator implements or maps it to its data exchange
platform; requests signed with ``app_api.core.signing``; its protocol sandbox, development only, is
``app_api.platform.datahub.sandbox``).
Whichever adapter answers, the gateway first checks the consent and then records the read
(``app_api.platform.datahub.access_log``): a row in ``app_datahub_access`` naming the actor, the
purpose and the application, and a ``datahub.registry_read`` entry in the audit chain. Callers pass
``actor`` (an ``access_log.Actor``: the resident, an officer with department, an agent with station
and mandate, a system job) and ``application_ref``; without ``actor`` it is worked out from
``accessor_id`` (the subject themself, else by the account's staff role).

Issuing an e-certificate writes it to the city's e-certificate library through the adapter, after
the commit, by an outbox job (``app_api.platform.datahub.certificates``): ``issue_certificate`` keeps
a ``pending`` row here (the cache the wallet shows) and the job sends it, keyed by its certificate
number, until the library has it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar, cast

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import china_today
from app_api.core.crypto import decrypt_bytes, decrypt_str, encrypt_str, lookup_hash
from app_api.core.errors import AppError, UpstreamError
from app_api.core.http import http_client
from app_api.core.jobs import outbox
from app_api.core.settings import get_settings
from app_api.core.signing import signed_headers
from app_api.platform.consent.service import require as require_consent
from app_api.platform.datahub.access_log import Actor, record_read, resolve
from app_api.platform.datahub.errors import LibraryConflict
from app_api.platform.datahub.models import ECertificate, LegalPersonRecord, PopulationRecord
from app_api.platform.datahub.validity import valid_until

APP_ID = "wojia"
ISSUE_TASK = "datahub.issue_certificate"
R = TypeVar("R")


class RecordNotFound(AppError):
    code = "datahub.not_found"
    title = "未在城市数据中心查到相关记录"
    status = 404


@dataclass
class PersonRecord:
    name: str
    id_number: str
    gender: str
    birth_date: dt.date
    ethnicity: str
    address: str
    household: str
    marital_status: str
    photo: bytes | None = field(default=None, repr=False)


@dataclass
class LegalPerson:
    uscc: str
    name: str
    kind: str
    legal_rep_name: str
    address: str
    business_scope: str
    registered_capital_fen: int
    established_on: dt.date


@dataclass
class Certificate:
    id: str
    cert_type: str
    cert_no: str
    title: str
    issuer: str
    issued_on: dt.date
    valid_until: dt.date | None
    data: dict[str, Any]
    # As the library answers: "valid" or "revoked".
    status: str = "valid"


@dataclass(frozen=True)
class IssueOrder:
    """One certificate to write into the library; ``cert_no`` makes a repeated order a no-op."""

    cert_no: str
    holder_id_number: str
    cert_type: str
    title: str
    issuer: str
    issued_on: dt.date
    valid_until: dt.date | None
    data: dict[str, Any]
    source_ref: str | None

    def payload(self) -> dict[str, Any]:
        return {
            "cert_no": self.cert_no,
            "holder_id_number": self.holder_id_number,
            "cert_type": self.cert_type,
            "title": self.title,
            "issuer": self.issuer,
            "issued_on": self.issued_on.isoformat(),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "data": self.data,
            "source_ref": self.source_ref,
        }


def id_hash(id_number: str) -> str:
    return lookup_hash(id_number.upper(), purpose="id_number")


class Adapter(Protocol):
    async def person(self, session: AsyncSession, id_number: str) -> PersonRecord | None: ...
    async def legal_persons(self, session: AsyncSession, rep_id_number: str) -> list[LegalPerson]: ...
    async def certificates(self, session: AsyncSession, id_number: str) -> list[Certificate]: ...
    async def person_and_certificates(
        self, session: AsyncSession, id_number: str
    ) -> tuple[PersonRecord | None, list[Certificate]]:
        """``person`` and ``certificates`` of one holder at once (as each answers them)."""
        ...

    async def issue_certificate(self, session: AsyncSession, order: IssueOrder) -> None:
        """Write the certificate into the library; an order already there (same number, same
        contents) is accepted again; the same number with other contents raises ``LibraryConflict``."""
        ...

    async def revoke_certificate(self, session: AsyncSession, cert_no: str, reason: str) -> None:
        """Mark the certificate revoked in the library (again: a no-op)."""
        ...


def _person_of(r: PopulationRecord | SimpleNamespace) -> PersonRecord:
    return PersonRecord(
        name=decrypt_str(r.name_enc, aad="name"),
        id_number=decrypt_str(r.id_number_enc, aad="id_number"),
        gender=r.gender,
        birth_date=r.birth_date,
        ethnicity=r.ethnicity,
        address=decrypt_str(r.address_enc, aad="address"),
        household=r.household,
        marital_status=r.marital_status,
        photo=decrypt_bytes(r.photo_enc, aad="id_photo") if r.photo_enc else None,
    )


def _legal_of(r: LegalPersonRecord) -> LegalPerson:
    return LegalPerson(
        uscc=r.uscc,
        name=r.name,
        kind=r.kind,
        legal_rep_name=decrypt_str(r.legal_rep_name_enc, aad="name"),
        address=r.address,
        business_scope=r.business_scope,
        registered_capital_fen=r.registered_capital_fen,
        established_on=r.established_on,
    )


def _cert_of(r: ECertificate | SimpleNamespace) -> Certificate:
    return Certificate(
        id=r.id,
        cert_type=r.cert_type,
        cert_no=r.cert_no,
        title=r.title,
        issuer=r.issuer,
        issued_on=r.issued_on,
        valid_until=r.valid_until,
        data=r.data,
        status="revoked" if r.revoked_at else "valid",
    )


# The local records' reads, built once (the engine caches their compiled form).
_PERSON = select(PopulationRecord).where(PopulationRecord.id_number_hash == sa.bindparam("h"))
_ISSUED = select(ECertificate).where(
    ECertificate.holder_id_hash == sa.bindparam("h"), ECertificate.state == "issued"
)


def _person_and_issued() -> sa.CompoundSelect[Any]:
    """The person row and the issued certificates' rows of one holder in one statement: a UNION ALL
    of rows of one layout (``kind``, the person's columns, the certificate's columns), each row
    filling its own side; the other side is typed NULLs. No ORM objects are built for them."""
    person: sa.Table = PopulationRecord.__table__  # type: ignore[attr-defined]
    cert: sa.Table = ECertificate.__table__  # type: ignore[attr-defined]
    p_cols = [person.c[n] for n in _PERSON_COLUMNS]
    c_cols = [cert.c[n] for n in _CERT_COLUMNS]

    def nulls(cols: list[sa.Column[Any]], prefix: str) -> list[Any]:
        return [sa.cast(sa.null(), c.type).label(prefix + c.key) for c in cols]

    return sa.union_all(
        sa.select(
            sa.literal("p").label("kind"),
            *(c.label("p_" + c.key) for c in p_cols),
            *nulls(c_cols, "c_"),
        ).where(person.c.id_number_hash == sa.bindparam("h")),
        sa.select(
            sa.literal("c").label("kind"),
            *nulls(p_cols, "p_"),
            *(c.label("c_" + c.key) for c in c_cols),
        ).where(cert.c.holder_id_hash == sa.bindparam("h"), cert.c.state == "issued"),
    )


_PERSON_COLUMNS = (
    "name_enc",
    "id_number_enc",
    "gender",
    "birth_date",
    "ethnicity",
    "address_enc",
    "household",
    "marital_status",
    "photo_enc",
)
_CERT_COLUMNS = (
    "id",
    "cert_type",
    "cert_no",
    "title",
    "issuer",
    "issued_on",
    "valid_until",
    "data",
    "revoked_at",
)
_PERSON_AND_ISSUED = _person_and_issued()


def _side(row: Any, prefix: str, names: tuple[str, ...]) -> Any:
    """One side of a ``_PERSON_AND_ISSUED`` row, with the attribute names ``_person_of`` and
    ``_cert_of`` read."""
    m = row._mapping
    return SimpleNamespace(**{n: m[prefix + n] for n in names})


class LocalDatahub:
    """The records in our own database (the embedded default): the certificate table is the library
    itself, so a certificate is in it once its row leaves ``pending``."""

    async def person(self, session: AsyncSession, id_number: str) -> PersonRecord | None:
        r = (await session.exec(_PERSON, params={"h": id_hash(id_number)})).first()
        return _person_of(r) if r else None

    async def legal_persons(self, session: AsyncSession, rep_id_number: str) -> list[LegalPerson]:
        rows = (
            await session.exec(
                select(LegalPersonRecord).where(LegalPersonRecord.legal_rep_id_hash == id_hash(rep_id_number))
            )
        ).all()
        return [_legal_of(r) for r in rows]

    async def certificates(self, session: AsyncSession, id_number: str) -> list[Certificate]:
        rows = (await session.exec(_ISSUED, params={"h": id_hash(id_number)})).all()
        return [_cert_of(r) for r in rows]

    async def person_and_certificates(
        self, session: AsyncSession, id_number: str
    ) -> tuple[PersonRecord | None, list[Certificate]]:
        person: PersonRecord | None = None
        certs: list[Certificate] = []
        # sqlmodel's ``exec`` types no compound select; it runs any statement through the session.
        rows = await session.exec(_PERSON_AND_ISSUED, params={"h": id_hash(id_number)})  # type: ignore[call-overload]
        for row in rows:
            if row.kind == "p":
                person = _person_of(_side(row, "p_", _PERSON_COLUMNS))
            else:
                certs.append(_cert_of(_side(row, "c_", _CERT_COLUMNS)))
        return person, certs

    async def issue_certificate(self, session: AsyncSession, order: IssueOrder) -> None:
        # The row written by ``Datahub.issue_certificate`` is the record; the job marks it issued.
        row = (await session.exec(select(ECertificate).where(ECertificate.cert_no == order.cert_no))).first()
        if row is None or row.holder_id_hash != id_hash(order.holder_id_number):
            raise LibraryConflict(cert_no=order.cert_no)

    async def revoke_certificate(self, session: AsyncSession, cert_no: str, reason: str) -> None:
        # The row's ``revoked_at`` is the record's revocation.
        if (await session.exec(select(ECertificate).where(ECertificate.cert_no == cert_no))).first() is None:
            raise LibraryConflict(cert_no=cert_no)


class HttpDatahub:
    """Client of the project's proposed data-center protocol (``docs/adapters/datahub.yaml``), which
    a city's integrator implements or maps to its data exchange platform: JSON over HTTPS, requests
    signed the house way (``app_api.core.signing``)."""

    async def _post(self, path: str, payload: dict[str, Any], *, query: bool = True) -> dict[str, Any]:
        """The answer's ``data``. A query's "no such record" (404 with code 40400) is ``{}``; any
        other 404 (a wrong endpoint, a proxy's page) and any 404 to an order (issue, revoke) is the
        data center failing, not an answer: a misconfigured URL must not make every resident unknown
        or every certificate look delivered."""
        s = get_settings()
        body = json.dumps(payload, ensure_ascii=False).encode()
        signed = signed_headers(
            app_id=APP_ID, secret=s.datahub_app_key.get_secret_value(), method="POST", path=path, body=body
        )
        headers = {"content-type": "application/json", **signed.headers}
        try:
            resp = await http_client().post(s.datahub_endpoint + path, content=body, headers=headers)
            data: dict[str, Any] = resp.json()
        except Exception as e:
            raise UpstreamError("城市数据中心暂时无法访问") from e
        if resp.status_code == 404 and query and data.get("code") == "40400":
            return {}
        if resp.status_code == 409:
            raise LibraryConflict(upstream_code=data.get("code"), upstream_msg=data.get("msg"))
        if resp.status_code != 200 or data.get("code") != "0":
            raise UpstreamError("城市数据中心返回错误", upstream_code=data.get("code"))
        result: dict[str, Any] = data.get("data") or {}
        return result

    async def person(self, session: AsyncSession, id_number: str) -> PersonRecord | None:
        d = await self._post("/v1/population/query", {"id_number": id_number})
        if not d:
            return None
        with _unreadable():
            photo = base64.b64decode(d.pop("photo")) if d.get("photo") else None
            d["birth_date"] = dt.date.fromisoformat(d["birth_date"])
            return PersonRecord(**_known(PersonRecord, d), photo=photo)

    async def legal_persons(self, session: AsyncSession, rep_id_number: str) -> list[LegalPerson]:
        d = await self._post("/v1/legal-person/query", {"legal_rep_id_number": rep_id_number})
        out = []
        with _unreadable():
            for x in d.get("items", []):
                x["established_on"] = dt.date.fromisoformat(x["established_on"])
                out.append(LegalPerson(**_known(LegalPerson, x)))
        return out

    async def certificates(self, session: AsyncSession, id_number: str) -> list[Certificate]:
        d = await self._post("/v1/certificate/query", {"holder_id_number": id_number})
        out = []
        with _unreadable():
            for x in d.get("items", []):
                x["issued_on"] = dt.date.fromisoformat(x["issued_on"])
                x["valid_until"] = dt.date.fromisoformat(x["valid_until"]) if x.get("valid_until") else None
                out.append(Certificate(**_known(Certificate, x)))
        return out

    async def person_and_certificates(
        self, session: AsyncSession, id_number: str
    ) -> tuple[PersonRecord | None, list[Certificate]]:
        """The two queries sent at once (the resident waits for the slower, not for both); either
        failing fails the read."""
        person, certs = await asyncio.gather(
            self.person(session, id_number), self.certificates(session, id_number), return_exceptions=True
        )
        for failed in (person, certs):
            if isinstance(failed, BaseException):
                raise failed
        assert not isinstance(person, BaseException) and not isinstance(certs, BaseException)
        return person, certs

    async def issue_certificate(self, session: AsyncSession, order: IssueOrder) -> None:
        await self._post("/v1/certificate/issue", order.payload(), query=False)

    async def revoke_certificate(self, session: AsyncSession, cert_no: str, reason: str) -> None:
        await self._post("/v1/certificate/revoke", {"cert_no": cert_no, "reason": reason}, query=False)


def _known(record: type[Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The fields ``record`` has: a data center that adds a field to its answers breaks nothing."""
    names = {f.name for f in dataclasses.fields(record)}
    return {k: v for k, v in fields.items() if k in names}


@contextlib.contextmanager
def _unreadable() -> Iterator[None]:
    """A record missing a field, or with a malformed date or photo: the data center failed, 502."""
    try:
        yield
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise UpstreamError("城市数据中心返回的数据无法识别") from e


class Datahub:
    """Consent-checked, logged reads through whichever adapter is configured."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    async def _read(
        self,
        session: AsyncSession,
        fetch: Callable[[], Awaitable[R]],
        *,
        id_number: str,
        accessor_id: str,
        purpose: str,
        consent_id: str | None,
        subject_account_id: str,
        record_type: str,
        scopes: list[str],
        actor: Actor | None,
        application_ref: str | None,
    ) -> R:
        """Check the consent, read through the adapter, record the read (found or not) with its
        actor, in the access log and the audit chain."""

        async def one() -> tuple[R]:
            return (await fetch(),)

        (found,) = await self._reads(
            session,
            one,
            [(record_type, consent_id, scopes)],
            id_number=id_number,
            accessor_id=accessor_id,
            purpose=purpose,
            subject_account_id=subject_account_id,
            actor=actor,
            application_ref=application_ref,
        )
        return cast(R, found)

    async def _reads(
        self,
        session: AsyncSession,
        fetch: Callable[[], Awaitable[tuple[Any, ...]]],
        reads: list[tuple[str, str | None, list[str]]],
        *,
        id_number: str,
        accessor_id: str,
        purpose: str,
        subject_account_id: str,
        actor: Actor | None,
        application_ref: str | None,
    ) -> tuple[Any, ...]:
        """``_read`` for records fetched together: every read's consent (record type, consent,
        scopes) checked first, then one fetch answering each in order, then each read recorded."""
        for _, consent_id, scopes in reads:
            await require_consent(
                session, consent_id=consent_id, account_id=subject_account_id, purpose=purpose, scopes=scopes
            )
        found = await fetch()
        if actor is None:
            actor = await resolve(session, accessor_id, subject_account_id)
        for (record_type, consent_id, scopes), value in zip(reads, found, strict=True):
            await record_read(
                session,
                actor=actor,
                subject_account_id=subject_account_id,
                subject_hash=id_hash(id_number),
                record_type=record_type,
                purpose=purpose,
                consent_id=consent_id,
                fields=scopes,
                application_ref=application_ref,
                found=bool(value),
                registry=True,
                # Written with the transaction's next flush: a caller pulling several records under
                # ``session.no_autoflush`` writes all their access rows in one INSERT.
                flush=False,
            )
        return found

    async def person_and_certificates(
        self,
        session: AsyncSession,
        *,
        id_number: str,
        accessor_id: str,
        purpose: str,
        person_consent_id: str | None,
        certificate_consent_id: str | None,
        subject_account_id: str,
        actor: Actor | None = None,
        application_ref: str | None = None,
    ) -> tuple[PersonRecord, list[Certificate]]:
        """``person`` and ``certificates`` in one read of the records (one statement over the local
        tables, the two queries at once to a data center): both consents checked first, and each
        read recorded on its own, as the two calls would."""
        person, certs = await self._reads(
            session,
            lambda: self.adapter.person_and_certificates(session, id_number),
            [
                ("population", person_consent_id, ["population.basic"]),
                ("certificate", certificate_consent_id, ["certificates"]),
            ],
            id_number=id_number,
            accessor_id=accessor_id,
            purpose=purpose,
            subject_account_id=subject_account_id,
            actor=actor,
            application_ref=application_ref,
        )
        if person is None:
            raise RecordNotFound()
        return person, certs

    async def person(
        self,
        session: AsyncSession,
        *,
        id_number: str,
        accessor_id: str,
        purpose: str,
        consent_id: str | None,
        subject_account_id: str,
        scopes: list[str] | None = None,
        actor: Actor | None = None,
        application_ref: str | None = None,
    ) -> PersonRecord:
        rec = await self._read(
            session,
            lambda: self.adapter.person(session, id_number),
            id_number=id_number,
            accessor_id=accessor_id,
            purpose=purpose,
            consent_id=consent_id,
            subject_account_id=subject_account_id,
            record_type="population",
            scopes=scopes or ["population.basic"],
            actor=actor,
            application_ref=application_ref,
        )
        if rec is None:
            raise RecordNotFound()
        return rec

    async def legal_persons(
        self,
        session: AsyncSession,
        *,
        rep_id_number: str,
        accessor_id: str,
        purpose: str,
        consent_id: str | None,
        subject_account_id: str,
        actor: Actor | None = None,
        application_ref: str | None = None,
    ) -> list[LegalPerson]:
        return await self._read(
            session,
            lambda: self.adapter.legal_persons(session, rep_id_number),
            id_number=rep_id_number,
            accessor_id=accessor_id,
            purpose=purpose,
            consent_id=consent_id,
            subject_account_id=subject_account_id,
            record_type="legal_person",
            scopes=["legal_person"],
            actor=actor,
            application_ref=application_ref,
        )

    async def certificates(
        self,
        session: AsyncSession,
        *,
        id_number: str,
        accessor_id: str,
        purpose: str,
        consent_id: str | None,
        subject_account_id: str,
        actor: Actor | None = None,
        application_ref: str | None = None,
    ) -> list[Certificate]:
        return await self._read(
            session,
            lambda: self.adapter.certificates(session, id_number),
            id_number=id_number,
            accessor_id=accessor_id,
            purpose=purpose,
            consent_id=consent_id,
            subject_account_id=subject_account_id,
            record_type="certificate",
            scopes=["certificates"],
            actor=actor,
            application_ref=application_ref,
        )

    async def issue_certificate(
        self,
        session: AsyncSession,
        *,
        holder_id_number: str,
        cert_type: str,
        title: str,
        issuer: str,
        data: dict[str, Any],
        source_ref: str,
        valid_years: int | None = None,
    ) -> Certificate:
        """Issue a new e-certificate (the result of an approved application): a ``pending`` row here,
        in the caller's transaction, and an outbox job that writes it into the city's library after the
        commit (retried while the library is down; the certificate number makes a retry harmless).
        Dated in China time; valid until the day before the anniversary of ``valid_years``."""
        today = china_today()
        cert = ECertificate(
            holder_id_hash=id_hash(holder_id_number),
            holder_id_enc=encrypt_str(holder_id_number.upper(), aad="id_number"),
            state="pending",
            cert_type=cert_type,
            title=title,
            issuer=issuer,
            cert_no=f"{today:%Y%m%d}{secrets.token_hex(5).upper()}",
            issued_on=today,
            valid_until=valid_until(today, valid_years),
            data=data,
            source_ref=source_ref,
        )
        session.add(cert)
        await session.flush()
        await outbox.enqueue(session, ISSUE_TASK, certificate_id=cert.id)
        return _cert_of(cert)


def get_datahub() -> Datahub:
    return Datahub(HttpDatahub() if get_settings().datahub_adapter == "http" else LocalDatahub())
