"""One application's state, shared by the resident's, the reviewer's and the carrier's steps:
its encrypted form and address, the item version it was filed under, compare-and-set status
transitions, the clock's pauses, the figures frozen at the decision, and its event history.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_str, encrypt_str, mask_id_number
from app_api.core.db import utcnow
from app_api.core.jobs import outbox
from app_api.platform import audit, notify
from app_api.platform.accounts.principal import Principal
from columns.gov_services import messages, workdays
from columns.gov_services.catalogue import RECORD_FIELDS, CatalogueItem
from columns.gov_services.catalogue_store import load_version
from columns.gov_services.errors import InvalidTransition
from columns.gov_services.models import STATUS_NAMES, Application, Event

# ---------------------------------------------------------------- encrypted personal data


def form_of(app: Application) -> dict[str, Any]:
    if app.form_enc is None:
        return {}
    result: dict[str, Any] = json.loads(decrypt_str(app.form_enc, aad=f"gov_app:{app.id}"))
    return result


def set_form(app: Application, form: dict[str, Any]) -> None:
    app.form_enc = encrypt_str(json.dumps(form, ensure_ascii=False), aad=f"gov_app:{app.id}")


def form_view(app: Application) -> dict[str, Any]:
    """What the resident sees of the filled form: labels and values, the ID number masked."""
    fields = []
    for key, value in form_of(app).items():
        shown = mask_id_number(value) if key.endswith("id_number") and isinstance(value, str) else value
        fields.append({"key": key, "label": RECORD_FIELDS.get(key, key), "value": shown})
    return {"fields": fields, "ecerts": app.ecerts, "consents": app.consents}


def address_of(app: Application) -> dict[str, str] | None:
    if app.address_enc is None:
        return None
    result: dict[str, str] = json.loads(decrypt_str(app.address_enc, aad=f"gov_addr:{app.id}"))
    return result


def set_address(app: Application, address: dict[str, str]) -> None:
    app.address_enc = encrypt_str(json.dumps(address, ensure_ascii=False), aad=f"gov_addr:{app.id}")


async def version_of(session: AsyncSession, app: Application) -> CatalogueItem:
    """The item version the application was filed under (read once per process: versions never change)."""
    return await load_version(session, app.item_version_id)


# ---------------------------------------------------------------- history


async def record_event(
    session: AsyncSession,
    app: Application,
    *,
    kind: str,
    title: str,
    actor: Principal | None,
    role: str,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """A timeline entry the resident and the reviewer see, and its audit record."""
    event = Event(
        application_id=app.id,
        kind=kind,
        title=title,
        note=note,
        actor_id=actor.id if actor else None,
        actor_role=role,
        data=data or {},
    )
    session.add(event)
    kept = session.sync_session.info.get(_KEPT)
    if kept is not None:
        kept.append(event)
    await audit.record(
        session,
        action=f"gov_services.application_{kind}",
        actor_id=actor.id if actor else None,
        subject_type="gov_services_application",
        subject_id=app.id,
        data={"status": app.status, "item": app.item_code, **(data or {})},
    )


_KEPT = "gov_services.events_written"


@contextmanager
def keeping_events(session: AsyncSession) -> Iterator[list[Event]]:
    """The timeline entries written in the block, as they are written: the timeline of an
    application created in the block, without reading it back."""
    kept: list[Event] = []
    session.sync_session.info[_KEPT] = kept
    try:
        yield kept
    finally:
        session.sync_session.info.pop(_KEPT, None)


async def timeline(session: AsyncSession, app: Application) -> list[Event]:
    return list(
        (
            await session.exec(
                select(Event).where(Event.application_id == app.id).order_by(col(Event.at), col(Event.id))
            )
        ).all()
    )


async def bundle_changed(session: AsyncSession, app: Application) -> None:
    """An application of a life event (一件事) reached an end: the life event's job looks again
    (files what waited for this result; delivers once when every item has ended)."""
    if app.bundle_id is not None:
        await outbox.enqueue(session, "gov_services.bundle_progress", bundle_app_id=app.bundle_id)


# The steps of a life event's item (一件事) its applicant is not told about one by one: they hear once
# when the life event is submitted and once when every item has ended; what asks something of them
# (a supplement, a fee, a refusal, a cancellation) is still told per item.
QUIET_IN_BUNDLE = frozenset({"已受理", "已办结"})


async def tell(session: AsyncSession, app: Application, status: str, note: str = "") -> None:
    """Tell the applicant their application's status changed (a life event's item: only what asks
    something of them, see ``QUIET_IN_BUNDLE``)."""
    if app.bundle_id is not None and status in QUIET_IN_BUNDLE:
        return
    await notify.send(
        session,
        account_id=app.applicant_id,
        template=messages.STATUS_CHANGED,
        params={"item": app.item_name, "number": app.number, "status": status, "note": note},
    )


# ---------------------------------------------------------------- status


async def claim(session: AsyncSession, app: Application, allowed: Sequence[str], to: str) -> bool:
    """Move ``app`` to ``to`` only if it is still in one of ``allowed``: a compare-and-set in the
    database, so two concurrent requests (double taps, two reviewers) cannot both act. SQLite has no
    row locks; this works the same there and on PostgreSQL."""
    conn = await session.connection()
    result = await conn.execute(
        sa.update(Application)
        .where(col(Application.id) == app.id, col(Application.status).in_(list(allowed)))
        .values(status=to, updated_at=utcnow())
    )
    if result.rowcount != 1:
        await session.refresh(app)
        return False
    app.status = to
    return True


async def transition(session: AsyncSession, app: Application, allowed: Sequence[str], to: str) -> None:
    if app.status not in allowed or not await claim(session, app, allowed, to):
        state = STATUS_NAMES[app.status]
        raise InvalidTransition(f"申请当前为“{state}”状态，不能执行此操作", status=app.status)


# ---------------------------------------------------------------- clock


def pauses_of(app: Application) -> list[workdays.Pause]:
    return [
        (dt.datetime.fromisoformat(p[0]), dt.datetime.fromisoformat(p[1]) if p[1] else None)
        for p in app.pauses
    ]


def close_pause(app: Application, now: dt.datetime) -> None:
    pauses = [list(p) for p in app.pauses]
    if pauses and pauses[-1][1] is None:
        pauses[-1][1] = now.isoformat()
    app.pauses = pauses


def started_at(app: Application) -> dt.datetime:
    assert app.submitted_at is not None
    return app.submitted_at


def record_decision(app: Application, at: dt.datetime) -> None:
    """Freeze the supervision outcome of a decision (used days, on time, same day)."""
    app.decided_at = at
    if app.submitted_at is not None:
        used = workdays.elapsed_working_days(app.submitted_at, at, pauses=pauses_of(app))
        app.used_days = round(used, 3)
        app.on_time = used <= app.limit_days
        app.same_day = workdays.same_day(app.submitted_at, at)
