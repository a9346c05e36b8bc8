"""One-tap application (一键申报): with the resident's consent per group of fields, fill the form
from the data center's records and attach e-certificates by reference."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import china_today
from app_api.core.db import utcnow
from app_api.core.errors import ValidationFailed
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.consent import service as consent
from app_api.platform.datahub.service import Certificate, Datahub, PersonRecord, get_datahub
from columns.gov_services.catalogue import (
    CONSENT_GROUPS,
    CONSENT_SCOPES,
    ECERT_CODES,
    RECORD_FIELDS,
    CatalogueItem,
    Material,
)
from columns.gov_services.errors import IdentityRecordMissing, InvalidTransition
from columns.gov_services.lifecycle import form_of, form_view, record_event, set_form, version_of
from columns.gov_services.models import DRAFT, SUPPLEMENT, Application
from columns.gov_services.rules import record_fields

PREFILL_PURPOSE = "gov_services.prefill"


def usable_certificates(certs: list[Certificate], today: dt.date | None = None) -> list[Certificate]:
    """The certificates a material may reference: valid as the library answers (not revoked, not
    still being issued) and not past their last valid day; newest first."""
    day = today or china_today()
    ok = [c for c in certs if c.status == "valid" and (c.valid_until is None or c.valid_until >= day)]
    return sorted(ok, key=lambda c: c.issued_on, reverse=True)


def prefill_preview(item: CatalogueItem) -> list[dict[str, Any]]:
    """Per consent group: which fields and materials would be filled, and the consent text."""
    groups: dict[str, dict[str, Any]] = {}
    for m in item.materials:
        for f in m.fill_fields:
            g = groups.setdefault(f.split(".", 1)[0], {"fields": {}, "materials": []})
            g["fields"][f] = RECORD_FIELDS[f]
            if m.name not in g["materials"]:
                g["materials"].append(m.name)
        if m.ecert:
            g = groups.setdefault("certificate", {"fields": {}, "materials": []})
            g["fields"][f"certificate.{m.ecert}"] = f"电子证照：{m.ecert}"
            g["materials"].append(m.name)
    # Fields the condition rules check are read with the same consent as the materials' fields.
    for f in sorted(record_fields(item.rules)):
        g = groups.setdefault(f.split(".", 1)[0], {"fields": {}, "materials": []})
        g["fields"].setdefault(f, RECORD_FIELDS[f])
    return [
        {
            "group": g,
            "consent_text": f"同意{item.department}为办理“{item.name}”调取您的{CONSENT_GROUPS[g]}",
            "fields": [{"key": k, "label": v} for k, v in groups[g]["fields"].items()],
            "materials": groups[g]["materials"],
        }
        for g in CONSENT_GROUPS
        if g in groups
    ]


async def prefill(
    session: AsyncSession, *, app: Application, principal: Principal, groups: list[str]
) -> dict[str, Any]:
    """Record a consent per group the resident agreed to, then fill from the data center."""
    if app.status not in (DRAFT, SUPPLEMENT):
        raise InvalidTransition("申请已提交，不能再修改")
    item = await version_of(session, app)
    offered = {p["group"]: p for p in prefill_preview(item)}
    unknown = [g for g in groups if g not in offered]
    if unknown or not groups:
        raise ValidationFailed("请选择本事项可授权的信息类别", allowed=list(offered))
    wanted = {f for m in item.materials for f in m.fill_fields} | record_fields(item.rules)
    filled = await fill_from_records(
        session,
        principal=principal,
        consent_texts={g: offered[g]["consent_text"] for g in groups},
        wanted=wanted,
        materials=list(item.materials),
    )
    form = form_of(app)
    form.update(filled.form)
    set_form(app, form)
    app.consents = {**app.consents, **filled.consents}
    app.ecerts = {**app.ecerts, **filled.ecerts}
    app.updated_at = utcnow()
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="prefilled",
        title="授权调取信息",
        actor=principal,
        role="resident",
        data={"groups": groups},
    )
    return form_view(app)


@dataclass
class Filled:
    form: dict[str, Any]
    consents: dict[str, str]
    ecerts: dict[str, Any]


async def fill_from_records(
    session: AsyncSession,
    *,
    principal: Principal,
    consent_texts: dict[str, str],
    wanted: set[str],
    materials: list[Material],
    account: Account | None = None,
) -> Filled:
    """One consent per group (its text as the resident saw it), then the records read with it: the
    ``wanted`` form fields, and a usable e-certificate for each material that can be one. Shared by
    an item's application and a life event's (one consent screen for all its items). ``account``:
    the principal's, when the caller has read it already."""
    if account is None or account.id != principal.id:
        account = await session.get(Account, principal.id)
    id_number = account.id_number if account else None
    if not id_number:
        raise IdentityRecordMissing("调取信息需要先完成实名认证（身份证号核验）")
    hub = get_datahub()
    out = Filled(form={}, consents={}, ecerts={})
    # Held until the reads are done: the gateway's consent check finds them in the session (it keeps
    # only weak references to unchanged objects).
    granted = []
    for g, text in consent_texts.items():
        c = await consent.grant(
            session,
            account_id=principal.id,
            purpose=PREFILL_PURPOSE,
            scopes=[CONSENT_SCOPES[g]],
            text=text,
            grantee="gov_services",
            ttl=dt.timedelta(days=30),
            flush=False,
        )
        out.consents[g] = c.id
        granted.append(c)
    # The consents given on this screen in one INSERT; the gateway finds them in the session.
    await session.flush()
    # One read per record group, none per material; their access-log rows are written together by
    # the next flush after the last read.
    with session.no_autoflush:
        # The population record and the certificates, when both are asked for, in one read.
        together = {"person", "certificate"} <= consent_texts.keys()
        if together:
            p, certs = await hub.person_and_certificates(
                session,
                id_number=id_number,
                accessor_id=principal.id,
                purpose=PREFILL_PURPOSE,
                person_consent_id=out.consents["person"],
                certificate_consent_id=out.consents["certificate"],
                subject_account_id=principal.id,
            )
            _fill_person(out, p, wanted)
            _fill_certificates(out, certs, materials)
        for g in consent_texts:
            if together and g in ("person", "certificate"):
                continue
            await _read_group(
                session,
                hub,
                g,
                out,
                principal=principal,
                id_number=id_number,
                wanted=wanted,
                materials=materials,
            )
    del granted
    return out


async def _read_group(
    session: AsyncSession,
    hub: Datahub,
    g: str,
    out: Filled,
    *,
    principal: Principal,
    id_number: str,
    wanted: set[str],
    materials: list[Material],
) -> None:
    """Read one record group with its consent into ``out``."""
    common: dict[str, Any] = {
        "accessor_id": principal.id,
        "purpose": PREFILL_PURPOSE,
        "consent_id": out.consents[g],
        "subject_account_id": principal.id,
    }
    if g == "person":
        _fill_person(out, await hub.person(session, id_number=id_number, **common), wanted)
    elif g == "legal_person":
        found = await hub.legal_persons(session, rep_id_number=id_number, **common)
        if found:
            lp = found[0]
            values = {
                "legal_person.name": lp.name,
                "legal_person.credit_code": lp.uscc,
                "legal_person.representative": lp.legal_rep_name,
                "legal_person.address": lp.address,
                "legal_person.business_scope": lp.business_scope,
            }
            out.form.update({k: v for k, v in values.items() if k in wanted})
    elif g == "certificate":
        _fill_certificates(out, await hub.certificates(session, id_number=id_number, **common), materials)


def _fill_person(out: Filled, p: PersonRecord, wanted: set[str]) -> None:
    values = {
        "person.name": p.name,
        "person.id_number": p.id_number,
        "person.gender": p.gender,
        "person.birth_date": p.birth_date.isoformat(),
        "person.address": p.address,
        "person.household": p.household,
        "person.photo": "人口库证件照" if p.photo else None,
    }
    out.form.update({k: v for k, v in values.items() if k in wanted and v is not None})


def _fill_certificates(out: Filled, found: list[Certificate], materials: list[Material]) -> None:
    """A usable e-certificate for each material that can be one."""
    certs = usable_certificates(found)
    for m in materials:
        if not m.ecert:
            continue
        match = next((c for c in certs if c.cert_type == ECERT_CODES[m.ecert] or c.title == m.ecert), None)
        if match is not None:
            out.ecerts[m.name] = {
                "id": match.id,
                "cert_no": match.cert_no,
                "title": match.title,
                "issuer": match.issuer,
                "valid_until": match.valid_until.isoformat() if match.valid_until else None,
            }
