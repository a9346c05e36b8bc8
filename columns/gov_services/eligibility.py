"""Which of an item's conditions an applicant meets: the facts the rules run on, gathered from an
application's prefilled form and attached e-certificates, or, before any application, from the
applicant's verified ID number alone (its birth date)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.accounts.models import Account
from app_api.platform.datahub import citizen_id
from columns.gov_services.catalogue import CatalogueItem
from columns.gov_services.lifecycle import form_of
from columns.gov_services.models import Application
from columns.gov_services.rules import Eligibility, Facts, evaluate, record_fields


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


async def _verified_birth_date(session: AsyncSession, account_id: str) -> dt.date | None:
    # The ID number was verified at real-name authentication; GB 11643 encodes the birth date.
    account = await session.get(Account, account_id)
    id_number = account.id_number if account is not None else None
    if not id_number or citizen_id.problem(id_number) is not None:
        return None
    return citizen_id.birth_date(id_number)


def facts_of(item: CatalogueItem, app: Application, form: dict[str, Any], birth: dt.date | None) -> Facts:
    household = form.get("person.household") or form.get("person.address")
    return Facts(
        birth_date=_date(form.get("person.birth_date")) or birth,
        household=str(household) if household else None,
        ecerts=frozenset(m.ecert for m in item.materials if m.ecert and m.name in app.ecerts),
        certificates_checked="certificate" in app.consents,
        form=form,
    )


async def for_application(session: AsyncSession, *, app: Application, item: CatalogueItem) -> Eligibility:
    form = form_of(app)
    birth = None
    if "person.birth_date" in record_fields(item.rules) and not form.get("person.birth_date"):
        birth = await _verified_birth_date(session, app.applicant_id)
    return evaluate(item.rules, item.conditions, facts_of(item, app, form, birth))


async def for_account(session: AsyncSession, *, account_id: str, item: CatalogueItem) -> Eligibility:
    """Before an application exists: only what the verified ID number tells."""
    birth = None
    if "person.birth_date" in record_fields(item.rules):
        birth = await _verified_birth_date(session, account_id)
    return evaluate(item.rules, item.conditions, Facts(birth_date=birth))
