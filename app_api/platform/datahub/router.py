from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app_api.core.db import SessionDep
from app_api.core.paging import CursorQuery, LimitQuery
from app_api.platform.access import CurrentAccount, public, require_roles
from app_api.platform.accounts.principal import Principal
from app_api.platform.consent.models import Consent
from app_api.platform.datahub import certificates, wallet
from app_api.platform.datahub.access_log import reads_of
from app_api.platform.datahub.models import ECertificate
from app_api.platform.datahub.schemas import (
    CertificateDetail,
    CertificateList,
    CertificateOut,
    DataAccessList,
    RevokeIn,
    SharedCertificate,
    ShareIn,
    ShareList,
    ShareOut,
    VerifyCode,
    VerifyResult,
)

router = APIRouter(tags=["datahub"])
Grantee = Annotated[Principal, Depends(require_roles("reviewer", "bank_officer"))]
Issuer = Annotated[Principal, Depends(require_roles("reviewer", "admin"))]


@router.get("/me/data-access")
async def my_data_access(
    principal: CurrentAccount, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = 50
) -> DataAccessList:
    """Who read this resident's records at the city data center, for what, on which consent; newest
    first, page on with ``cursor`` = the previous page's ``next_cursor``."""
    items, next_cursor = await reads_of(session, principal.id, cursor=cursor, limit=limit)
    return DataAccessList(items=items, next_cursor=next_cursor)


def _cert_out(row: ECertificate) -> CertificateOut:
    status = wallet.status_of(row)
    return CertificateOut(
        id=row.id,
        cert_type=row.cert_type,
        cert_no=row.cert_no,
        title=row.title,
        issuer=row.issuer,
        issued_on=row.issued_on,
        valid_until=row.valid_until,
        status=status,
        status_text=wallet.STATUS_TEXT[status],
    )


def _share_out(c: Consent) -> ShareOut:
    kind, _, grantee_id = (c.grantee or ":").partition(":")
    return ShareOut(
        id=c.id,
        grantee_kind=kind,
        grantee_id=grantee_id,
        purpose=c.text,
        granted_at=c.granted_at,
        expires_at=c.expires_at,
        withdrawn_at=c.withdrawn_at,
        status=wallet.share_status(c),
    )


@router.get("/me/certificates")
async def my_certificates(principal: CurrentAccount, session: SessionDep) -> CertificateList:
    """证照夹: the resident's e-certificates, newest first, with their status (签发中 until the city's
    library has them)."""
    return CertificateList(items=[_cert_out(r) for r in await wallet.mine(session, principal.id)])


@router.get("/me/certificates/{certificate_id}")
async def my_certificate(
    certificate_id: str, principal: CurrentAccount, session: SessionDep
) -> CertificateDetail:
    """One certificate with a fresh verification code (valid certificates only) and its shares."""
    row = await wallet.owned(session, principal.id, certificate_id)
    code = wallet.verify_code(row)
    shares = await wallet.shares_of(session, principal.id, row.id)
    return CertificateDetail(
        **_cert_out(row).model_dump(),
        data=row.data,
        verification=VerifyCode(code=code[0], expires_at=code[1]) if code else None,
        shares=[_share_out(c) for c in shares],
    )


@router.get("/me/certificates/{certificate_id}/shares")
async def my_certificate_shares(
    certificate_id: str, principal: CurrentAccount, session: SessionDep
) -> ShareList:
    """Who this certificate is shared with: live, expired and withdrawn shares, newest first."""
    row = await wallet.owned(session, principal.id, certificate_id)
    return ShareList(items=[_share_out(c) for c in await wallet.shares_of(session, principal.id, row.id)])


@router.post("/me/certificates/{certificate_id}/shares", status_code=201)
async def share_certificate(
    certificate_id: str, body: ShareIn, principal: CurrentAccount, session: SessionDep
) -> ShareOut:
    """Share the certificate with a department or bank for a purpose until a time (recorded as a consent)."""
    row = await wallet.owned(session, principal.id, certificate_id)
    c = await wallet.share(
        session,
        account_id=principal.id,
        row=row,
        grantee_kind=body.grantee_kind,
        grantee_id=body.grantee_id,
        purpose=body.purpose,
        expires_at=body.expires_at,
    )
    return _share_out(c)


@router.delete("/me/certificates/{certificate_id}/shares/{share_id}")
async def withdraw_certificate_share(
    certificate_id: str, share_id: str, principal: CurrentAccount, session: SessionDep
) -> ShareOut:
    """Withdraw a share: the grantee can no longer open it."""
    row = await wallet.owned(session, principal.id, certificate_id)
    c = await wallet.withdraw_share(
        session, account_id=principal.id, certificate_id=row.id, share_id=share_id
    )
    return _share_out(c)


@router.get("/certificates/verify", dependencies=[Depends(public)])
async def verify_certificate(
    request: Request,
    session: SessionDep,
    code: Annotated[str, Query(title="核验码", min_length=1, max_length=120)],
) -> VerifyResult:
    """A counter checks a certificate's verification code: valid, revoked or expired, with a masked
    summary (anyone may ask; the code itself is short-lived; limited per client address, 429
    ``datahub.verify_rate_limited`` with Retry-After)."""
    await wallet.limit_verify(request.client.host if request.client else "unknown")
    return VerifyResult.model_validate(await wallet.check(session, code))


@router.get("/certificate-shares/{share_id}")
async def open_certificate_share(share_id: str, principal: Grantee, session: SessionDep) -> SharedCertificate:
    """The grantee's officer opens a certificate shared with their department or bank (logged for the
    resident)."""
    c, row = await wallet.read_share(session, principal=principal, share_id=share_id)
    return SharedCertificate(
        share_id=c.id, purpose=c.text, expires_at=c.expires_at, certificate=_cert_out(row), data=row.data
    )


@router.post("/certificates/{certificate_id}/revoke")
async def revoke_certificate(
    certificate_id: str, body: RevokeIn, principal: Issuer, session: SessionDep
) -> CertificateOut:
    """The issuing department revokes a certificate; the city's library is told by a job."""
    row = await certificates.revoke(
        session, certificate_id=certificate_id, principal=principal, reason=body.reason
    )
    return _cert_out(row)
