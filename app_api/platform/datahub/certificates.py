"""E-certificates into the city's library: the issuing and revoking jobs, and their sweep.

``Datahub.issue_certificate`` writes a ``pending`` row and an outbox job in the approval's
transaction; the job below sends the certificate to the library through the configured adapter
and marks the row ``issued``. The library takes a certificate number it already holds (same
contents) as a no-op, so a retry, a second worker or the sweep never issues twice; a library
that is down makes the job fail and retry (``app_api.core.jobs``), and the sweep picks up what
outlived its job's attempts. Revocation travels the same way.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_str
from app_api.core.db import session_scope, sessionmaker, utcnow
from app_api.core.jobs import outbox
from app_api.platform import audit
from app_api.platform.accounts.principal import Principal
from app_api.platform.datahub.errors import CertificateNotFound, CertificatePending, NotIssuer
from app_api.platform.datahub.models import ECertificate
from app_api.platform.datahub.service import IssueOrder, get_datahub

log = logging.getLogger(__name__)
REVOKE_TASK = "datahub.revoke_certificate"
# The sweep leaves a hand-off this young to its job.
SWEEP_AFTER = dt.timedelta(minutes=2)
SWEEP_BATCH = 200
_T = ECertificate.__table__  # type: ignore[attr-defined]


class HolderUnknown(Exception):
    """A pending row without the holder's ID number (written before this column existed)."""


def _order_of(row: ECertificate) -> IssueOrder:
    if row.holder_id_enc is None:
        raise HolderUnknown(row.id)
    return IssueOrder(
        cert_no=row.cert_no,
        holder_id_number=decrypt_str(row.holder_id_enc, aad="id_number"),
        cert_type=row.cert_type,
        title=row.title,
        issuer=row.issuer,
        issued_on=row.issued_on,
        valid_until=row.valid_until,
        data=row.data,
        source_ref=row.source_ref,
    )


async def deliver(certificate_id: str) -> str:
    """Write one pending certificate into the library and mark it issued; ``already`` if it was."""
    async with sessionmaker()() as s:
        row = await s.get(ECertificate, certificate_id)
        if row is None:
            raise CertificateNotFound(certificate_id=certificate_id)
        if row.state != "pending":
            return "already"
        order = _order_of(row)
    async with session_scope() as s:
        await get_datahub().adapter.issue_certificate(s, order)
        result = await s.exec(
            sa.update(_T)
            .where(_T.c.id == certificate_id, _T.c.state == "pending")
            .values(state="issued", issued_at=utcnow())
        )
        if result.rowcount == 1:
            await audit.record(
                s,
                action="datahub.certificate_issued",
                subject_type="datahub_certificate",
                subject_id=certificate_id,
                data={"cert_no": order.cert_no, "cert_type": order.cert_type, "issuer": order.issuer},
            )
            return "issued"
    return "already"


async def revoke(
    session: AsyncSession, *, certificate_id: str, principal: Principal, reason: str
) -> ECertificate:
    """The issuing department (or an admin) revokes a certificate: here at once, in the library by
    a job. Revoking again changes nothing."""
    row = await session.get(ECertificate, certificate_id)
    if row is None:
        raise CertificateNotFound()
    if not (principal.has("admin") or (principal.has("reviewer") and principal.department == row.issuer)):
        raise NotIssuer()
    if row.revoked_at is None:
        row.revoked_at, row.revoke_reason = utcnow(), reason
        session.add(row)
        await session.flush()
        await audit.record(
            session,
            action="datahub.certificate_revoked",
            actor_id=principal.id,
            subject_type="datahub_certificate",
            subject_id=row.id,
            data={"cert_no": row.cert_no, "reason": reason},
        )
        await outbox.enqueue(session, REVOKE_TASK, certificate_id=row.id)
    return row


async def deliver_revocation(certificate_id: str) -> str:
    """Tell the library a certificate was revoked; waits (fails, to be retried) while the certificate
    itself has not reached the library."""
    async with sessionmaker()() as s:
        row = await s.get(ECertificate, certificate_id)
        if row is None:
            raise CertificateNotFound(certificate_id=certificate_id)
        if row.revoked_at is None or row.revoke_sent_at is not None:
            return "nothing"
        if row.state == "pending":
            raise CertificatePending("证照尚未进入电子证照库，稍后再撤销")
        cert_no, reason = row.cert_no, row.revoke_reason or ""
    async with session_scope() as s:
        await get_datahub().adapter.revoke_certificate(s, cert_no, reason)
        await s.exec(
            sa.update(_T)
            .where(_T.c.id == certificate_id, _T.c.revoke_sent_at.is_(None))
            .values(revoke_sent_at=utcnow())
        )
    return "revoked"


async def sweep(now: dt.datetime | None = None) -> dict[str, int]:
    """The last line of defence: certificates still pending, and revocations not sent, whose jobs
    have had their time (or went dead while the library was down for long)."""
    before = (now or utcnow()) - SWEEP_AFTER
    async with sessionmaker()() as s:
        pending = (
            await s.exec(
                select(ECertificate.id)
                .where(ECertificate.state == "pending", col(ECertificate.created_at) < before)
                .limit(SWEEP_BATCH)
            )
        ).all()
        unsent = (
            await s.exec(
                select(ECertificate.id)
                .where(
                    col(ECertificate.revoked_at).is_not(None),
                    col(ECertificate.revoke_sent_at).is_(None),
                    col(ECertificate.revoked_at) < before,
                )
                .limit(SWEEP_BATCH)
            )
        ).all()
    counts: dict[str, int] = {}
    for cid in pending:
        try:
            outcome = await deliver(cid)
        except Exception as exc:  # the library still down: the next sweep tries again
            log.warning("certificate %s: issuing failed again (%s)", cid, exc)
            outcome = "failed"
        counts[outcome] = counts.get(outcome, 0) + 1
    for cid in unsent:
        try:
            outcome = "revocation_" + await deliver_revocation(cid)
        except Exception as exc:
            log.warning("certificate %s: revoking failed again (%s)", cid, exc)
            outcome = "revocation_failed"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
