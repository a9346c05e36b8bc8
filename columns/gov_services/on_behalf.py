"""Filing for a resident by an agent (代办员) at a liaison station, under a mandate recorded by
``app_api.platform.agents``: the agent checks the resident and the original materials in person."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.datahub.access_log import Actor, record_read
from columns.gov_services.applications import add_upload, create_application, submit
from columns.gov_services.catalogue import RECORD_FIELDS
from columns.gov_services.errors import ApplicationNotFound, IdentityRecordMissing
from columns.gov_services.lifecycle import record_event, set_form, version_of
from columns.gov_services.models import DRAFT, Application, Upload

# What an agent captures at the station rather than types in (the photo is taken there).
IN_PERSON_FIELDS = {"person.photo"}


async def file_on_behalf(
    session: AsyncSession,
    *,
    resident_id: str,
    agent_id: str,
    station_id: str,
    mandate_id: str,
    item_code: str,
    form: dict[str, Any],
    client_key: str,
    delivery: dict[str, Any] | None,
) -> Application:
    """An agent (代办员) files for a resident under a recorded mandate (see ``app_api.platform.agents``).

    The agent checked the resident and the original materials in person at the station, which is
    the non-face alternative to L3 and stands in for uploads; the result can be posted to the
    station. Idempotent on the resident's client key, like a resident's own application.
    """
    account = await session.get(Account, resident_id)
    if account is None or not account.is_active:
        raise ApplicationNotFound("未找到该居民账户")
    if not account.id_number:
        raise IdentityRecordMissing("该居民尚未登记身份证号，无法代办")
    # In-person identity check by the agent: counts as the highest level for this filing.
    principal = Principal(id=account.id, roles=tuple(account.roles), identity_level=3)
    app, created = await create_application(
        session, principal=principal, item_code=item_code, client_key=client_key
    )
    if not created or app.status != DRAFT:
        return app
    item = await version_of(session, app)
    values = {k: v for k, v in form.items() if isinstance(v, str | int | float) and len(str(v)) <= 500}
    number = account.id_number
    # GB 11643: birth date in digits 7-14, sex in digit 17 (odd: male).
    filled: dict[str, Any] = {
        "person.name": account.real_name,
        "person.id_number": number,
        "person.birth_date": f"{number[6:10]}-{number[10:12]}-{number[12:14]}",
        "person.gender": "男" if int(number[16]) % 2 else "女",
    }
    filled.update({k: v for k, v in values.items() if k in RECORD_FIELDS})
    notes = {k: v for k, v in values.items() if k not in RECORD_FIELDS}
    set_form(
        app, {k: v for k, v in filled.items() if v is not None} | ({"agent.notes": notes} if notes else {})
    )
    app.agent_id = agent_id
    app.ecerts = {
        m.name: {
            "verified_in_person": True,
            "agent_id": agent_id,
            "station_id": station_id,
            "mandate_id": mandate_id,
        }
        for m in item.materials
        if m.required and not m.condition and (m.ecert or set(m.fill_fields) <= IN_PERSON_FIELDS)
    }
    address = None
    choice: str | None = None
    if delivery and delivery.get("method") == "station" and "免费邮寄" in item.delivery:
        choice = "免费邮寄"
        address = {
            "name": f"{delivery.get('station_name') or '代办点'}（代{account.real_name or '居民'}领取）",
            "phone": account.phone,
            "address": str(delivery.get("address") or ""),
        }
    session.add(app)
    await session.flush()
    # The agent read the resident's account record (name, ID number, phone) to file: the resident's
    # "who read my data" names the station and the mandate.
    await record_read(
        session,
        actor=Actor.agent(agent_id, station_id, mandate_id),
        subject_account_id=account.id,
        record_type="account",
        purpose="gov_services.agent_filing",
        application_ref=app.number,
        fields=["person.name", "person.id_number", "person.phone"],
    )
    await record_event(
        session,
        app,
        kind="agent_filed",
        title="代办员现场核验材料并代为申请",
        actor=None,
        role="agent",
        data={"agent_id": agent_id, "station_id": station_id, "mandate_id": mandate_id},
    )
    return await submit(
        session, app_id=app.id, principal=principal, delivery=choice, address=address, actor_role="agent"
    )


async def upload_on_behalf(
    session: AsyncSession,
    *,
    resident_id: str,
    agent_id: str,
    station_id: str,
    mandate_id: str,
    application_id: str,
    material: str,
    filename: str,
    content_type: str | None,
    data: bytes,
) -> Upload:
    """A material an agent uploads for one of the resident's applications (a supplement the reviewer
    asked for): only the resident's own application, checked like the resident's own upload."""
    app = await session.get(Application, application_id)
    if app is None or app.applicant_id != resident_id:
        raise ApplicationNotFound()
    account = await session.get(Account, resident_id)
    if account is None or not account.is_active:
        raise ApplicationNotFound("未找到该居民账户")
    principal = Principal(id=account.id, roles=tuple(account.roles), identity_level=3)
    return await add_upload(
        session,
        app=app,
        principal=principal,
        material=material,
        filename=filename,
        content_type=content_type,
        data=data,
        on_behalf={"agent_id": agent_id, "station_id": station_id, "mandate_id": mandate_id},
    )
