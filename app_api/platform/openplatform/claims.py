"""Claims read from the city's registries for a column: ``address`` (OIDC Core 5.1.1, from the
population registry) and ``ecertificates`` (only the e-certificate types granted, ``ecert:<type>``).

A resident who grants such a scope on the consent screen gives a platform consent (purpose
``openplatform.userinfo``, the column as grantee); each userinfo call reads the registry through the
data-center gateway under that consent, so the read is in the resident's "who read my data" log,
naming the column, and in the audit chain. Withdrawing the column's authorisation withdraws the
consent with it.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.accounts.models import Account
from app_api.platform.consent import service as consent
from app_api.platform.consent.models import Consent
from app_api.platform.datahub.access_log import PURPOSE_NAMES, Actor
from app_api.platform.datahub.service import RecordNotFound, get_datahub
from app_api.platform.openplatform.models import ExternalColumn
from app_api.platform.openplatform.schemas import ECERT_PREFIX, ECERT_TYPES, SCOPE_NAMES

PURPOSE = "openplatform.userinfo"
ADDRESS_SCOPE = "population.address"
CERT_SCOPE = "certificates"
# How the resident's "who read my data" names the purpose (as packages add their entries at import).
PURPOSE_NAMES.setdefault(PURPOSE, "第三方栏目读取您授权的信息（登录授权时同意）")


def registry_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    """The gateway scopes a column's OIDC scopes need (empty: nothing read from a registry)."""
    out = []
    if "address" in scopes:
        out.append(ADDRESS_SCOPE)
    types = cert_types(scopes)
    if types:
        out.append(CERT_SCOPE)
        out.extend(ECERT_PREFIX + t for t in types)
    return out


def cert_types(scopes: list[str] | tuple[str, ...]) -> list[str]:
    return sorted(s[len(ECERT_PREFIX) :] for s in scopes if s.startswith(ECERT_PREFIX) and s in SCOPE_NAMES)


def actor(column: ExternalColumn) -> Actor:
    """The column as the reader, named in the resident's "who read my data"."""
    return Actor.column(column.id, column.name)


async def record_consent(
    session: AsyncSession, *, account_id: str, column: ExternalColumn, scopes: list[str] | tuple[str, ...]
) -> None:
    """The platform consent behind the registry reads of the scopes the resident just granted."""
    wanted = registry_scopes(scopes)
    if not wanted:
        return
    names = "、".join(
        SCOPE_NAMES[s].removeprefix("您的") for s in scopes if s == "address" or s.startswith(ECERT_PREFIX)
    )
    await consent.grant(
        session,
        account_id=account_id,
        purpose=PURPOSE,
        scopes=wanted,
        grantee=column.id,
        text=f"我同意第三方栏目“{column.name}”（{column.operator_contact}）读取我的{names}，用于该栏目的服务。",
    )


async def _live_consent(session: AsyncSession, account_id: str, column_id: str) -> Consent | None:
    rows = await session.exec(
        select(Consent)
        .where(
            Consent.account_id == account_id,
            Consent.purpose == PURPOSE,
            Consent.grantee == column_id,
            col(Consent.withdrawn_at).is_(None),
        )
        .order_by(col(Consent.granted_at).desc())
    )
    for c in rows.all():
        if consent.is_valid(c):
            return c
    return None


async def withdraw_consents(session: AsyncSession, *, account_id: str, column_id: str) -> int:
    """Withdraw the registry consents given to this column (its authorisation ended)."""
    n = 0
    while (c := await _live_consent(session, account_id, column_id)) is not None:
        await consent.withdraw(session, account_id=account_id, consent_id=c.id)
        n += 1
    return n


async def registry_claims(
    session: AsyncSession, *, account: Account, column: ExternalColumn, scopes: list[str]
) -> dict[str, Any]:
    """``address`` and ``ecertificates`` for the scopes of this token, read now under the consent.

    A claim the registry has nothing for (no real-name yet, no record, no certificate of a type) is
    left out, as OIDC Core 5.3.2 allows; a missing consent (withdrawn) leaves both out."""
    wanted = registry_scopes(scopes)
    id_number = account.id_number
    if not wanted or not id_number:
        return {}
    c = await _live_consent(session, account.id, column.id)
    if c is None or not set(wanted) <= set(c.scopes):
        return {}
    hub = get_datahub()
    out: dict[str, Any] = {}
    if ADDRESS_SCOPE in wanted:
        try:
            person = await hub.person(
                session,
                id_number=id_number,
                accessor_id=column.id,
                purpose=PURPOSE,
                consent_id=c.id,
                subject_account_id=account.id,
                scopes=[ADDRESS_SCOPE],
                actor=actor(column),
            )
        except RecordNotFound:
            person = None
        if person is not None and person.address:
            out["address"] = {"formatted": person.address, "country": "中国"}
    types = cert_types(scopes)
    if types:
        certs = await hub.certificates(
            session,
            id_number=id_number,
            accessor_id=column.id,
            purpose=PURPOSE,
            consent_id=c.id,
            subject_account_id=account.id,
            actor=actor(column),
        )
        out["ecertificates"] = [
            {
                "type": x.cert_type,
                "type_name": ECERT_TYPES[x.cert_type],
                "number": x.cert_no,
                "title": x.title,
                "issuer": x.issuer,
                "issued_on": x.issued_on.isoformat(),
                "valid_until": x.valid_until.isoformat() if x.valid_until else None,
                "status": x.status,
            }
            for x in certs
            if x.cert_type in types
        ]
    return out
