"""Loading and authorising once: a resident's own application, a reviewer's department's one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app_api.core.db import SessionDep
from app_api.platform.access import CurrentAccount, require_roles
from app_api.platform.accounts.principal import Principal
from columns.gov_services import applications, life_event_applications, review
from columns.gov_services.models import Application, BundleApplication

Reviewer = Annotated[Principal, Depends(require_roles("reviewer"))]
StaffOrAdmin = Annotated[Principal, Depends(require_roles("reviewer", "admin"))]


async def _owned(app_id: str, principal: CurrentAccount, session: SessionDep) -> Application:
    return await applications.owned_application(session, app_id=app_id, principal=principal)


async def _reviewable(app_id: str, principal: Reviewer, session: SessionDep) -> Application:
    return await review.reviewable(session, app_id=app_id, principal=principal)


OwnedApplication = Annotated[Application, Depends(_owned)]
ReviewableApplication = Annotated[Application, Depends(_reviewable)]


async def _owned_bundle(
    bundle_app_id: str, principal: CurrentAccount, session: SessionDep
) -> BundleApplication:
    return await life_event_applications.owned(session, bundle_app_id=bundle_app_id, principal=principal)


OwnedBundleApplication = Annotated[BundleApplication, Depends(_owned_bundle)]
