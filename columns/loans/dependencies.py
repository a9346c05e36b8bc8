from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app_api.platform.access import require_roles
from app_api.platform.accounts.principal import Principal
from identity.api import require_step_up

APPLY_PURPOSE = "loans.apply"

Officer = Annotated[Principal, Depends(require_roles("bank_officer"))]
OfficerOrAdmin = Annotated[Principal, Depends(require_roles("bank_officer", "admin"))]
# L3 proved a moment ago (face check or an agent's in-person check), for applying only.
StepUpApplicant = Annotated[Principal, Depends(require_step_up(APPLY_PURPOSE))]
