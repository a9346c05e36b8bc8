"""Instant approval (秒批, 无人干预自动审批): an item version marked for it is approved by its rules
within the submitting request when every condition is checked by a rule and met and every material
came from the records (an e-certificate by reference or registry data, nothing uploaded for a person
to read). The approval goes through the reviewers' own approval path (e-certificate, paper result,
notification); the decision records which rules passed. A share of instant approvals is sampled into
the department's review queue; a reviewer confirms one or revokes it within the window, audited.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from app_api.platform.accounts.principal import Principal
from app_api.platform.datahub import certificates
from app_api.platform.datahub.models import ECertificate
from columns.gov_services import fee_payments, review
from columns.gov_services.catalogue import CatalogueItem
from columns.gov_services.config import get_config
from columns.gov_services.errors import NotInstantApproval, RevokeWindowClosed
from columns.gov_services.lifecycle import bundle_changed, record_event, tell, transition
from columns.gov_services.models import ACCEPTED, REVOKED, SUBMITTED, Application
from columns.gov_services.rules import Eligibility


def materials_from_records(
    item: CatalogueItem, app: Application, form: dict[str, Any], uploaded: set[str]
) -> bool:
    """Every material needed came from the records and nothing was uploaded."""
    if uploaded:
        return False
    for m in item.materials:
        if not m.required or m.condition:
            continue
        if m.name in app.ecerts:
            continue
        if m.fill_fields and not m.ecert and all(f in form for f in m.fill_fields):
            continue
        return False
    return True


def sample_percent(item: CatalogueItem) -> int:
    override = get_config().instant_sample_percent
    return item.instant_sample_percent if override is None else override


def _sampled(percent: int) -> bool:
    return secrets.randbelow(100) < percent


async def try_approve(
    session: AsyncSession,
    *,
    app: Application,
    item: CatalogueItem,
    eligibility: Eligibility,
    form: dict[str, Any],
    uploaded: set[str],
) -> bool:
    """Approve a just submitted application by the rules, if its item and its facts allow it."""
    if not item.instant_approval or not eligibility.fully_met:
        return False
    if not materials_from_records(item, app, form, uploaded):
        return False
    await transition(session, app, [SUBMITTED], ACCEPTED)
    now = utcnow()
    app.accepted_at, app.updated_at = now, now
    app.instant = True
    app.instant_sampled = _sampled(sample_percent(item))
    session.add(app)
    await session.flush()
    passed = [r.id for r in eligibility.results]
    await record_event(
        session,
        app,
        kind="accepted",
        title="系统自动受理（秒批）",
        actor=None,
        role="system",
        data={"instant": True},
    )
    await review.approve(
        session,
        app=app,
        principal=None,
        note="符合全部受理条件，材料均来自电子证照和人口库，系统自动审批（秒批）",
        role="system",
        data={"instant": True, "rules_passed": passed, "sampled": app.instant_sampled},
    )
    return True


def _instant(app: Application) -> None:
    if not app.instant:
        raise NotInstantApproval()


def revoke_deadline(app: Application) -> dt.datetime:
    assert app.decided_at is not None
    return app.decided_at + dt.timedelta(hours=get_config().instant_revoke_hours)


async def confirm(
    session: AsyncSession, *, app: Application, principal: Principal, note: str | None
) -> Application:
    """The after-the-fact review found the instant approval right."""
    _instant(app)
    if app.instant_reviewed_at is not None:
        return app
    now = utcnow()
    app.instant_reviewed_at, app.instant_reviewed_by, app.updated_at = now, principal.id, now
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="instant_confirmed",
        title="秒批结果经抽查确认",
        note=note,
        actor=principal,
        role="reviewer",
    )
    return app


async def revoke(
    session: AsyncSession, *, app: Application, principal: Principal, reason: str
) -> Application:
    """Revoke an instant approval within the window: the application ends revoked, the e-certificate
    it issued is revoked (here at once, in the city's library by datahub's job), a paid fee is
    refunded, the resident is told why, and the audit chain records who did it."""
    _instant(app)
    now = utcnow()
    if app.status in review.INSTANT_REVIEWABLE and now > revoke_deadline(app):
        raise RevokeWindowClosed(
            f"秒批结果只能在办结后{get_config().instant_revoke_hours}小时内撤销",
            deadline=revoke_deadline(app).isoformat(),
        )
    await transition(session, app, list(review.INSTANT_REVIEWABLE), REVOKED)
    app.revoked_at, app.decision_reason, app.updated_at = now, reason, now
    app.instant_reviewed_at = app.instant_reviewed_at or now
    app.instant_reviewed_by = app.instant_reviewed_by or principal.id
    app.reviewer_id = app.reviewer_id or principal.id
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="revoked",
        title="撤销秒批结果",
        note=reason,
        actor=principal,
        role="reviewer",
        data={"cert_no": app.result_cert_no, "sampled": app.instant_sampled},
    )
    await _revoke_certificate(session, app=app, principal=principal, reason=reason)
    await tell(session, app, "已撤销", f"原因：{reason}")
    await fee_payments.refund_paid(session, app, reason=fee_payments.REFUND_REVOKED)
    await bundle_changed(session, app)
    return app


async def _revoke_certificate(
    session: AsyncSession, *, app: Application, principal: Principal, reason: str
) -> None:
    if app.result_cert_no is None:
        return
    cert_id = (
        await session.exec(
            select(ECertificate.id).where(
                ECertificate.cert_no == app.result_cert_no, ECertificate.source_ref == app.id
            )
        )
    ).first()
    if cert_id is not None:
        await certificates.revoke(
            session, certificate_id=cert_id, principal=principal, reason=f"秒批结果撤销：{reason}"
        )
