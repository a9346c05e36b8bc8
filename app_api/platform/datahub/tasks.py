"""The certificate jobs: issue into the city's library after commit, revoke there, and the sweep."""

from __future__ import annotations

from app_api.core.jobs import broker
from app_api.core.jobs.runner import PermanentJobError
from app_api.platform.datahub import certificates
from app_api.platform.datahub.errors import CertificateNotFound, LibraryConflict
from app_api.platform.datahub.service import ISSUE_TASK


@broker.task(task_name=ISSUE_TASK)
async def issue_certificate(certificate_id: str) -> str:
    try:
        return await certificates.deliver(certificate_id)
    except (CertificateNotFound, LibraryConflict, certificates.HolderUnknown) as exc:
        raise PermanentJobError(f"{type(exc).__name__}: {exc}") from exc


@broker.task(task_name=certificates.REVOKE_TASK)
async def revoke_certificate(certificate_id: str) -> str:
    try:
        return await certificates.deliver_revocation(certificate_id)
    except (CertificateNotFound, LibraryConflict) as exc:
        raise PermanentJobError(f"{type(exc).__name__}: {exc}") from exc


@broker.task(task_name="datahub.certificates_sweep", schedule=[{"cron": "*/10 * * * *"}])
async def sweep() -> dict[str, int]:
    """Certificates still pending and revocations not sent, every ten minutes."""
    return await certificates.sweep()
