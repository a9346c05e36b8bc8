from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app_api.core.db import SessionDep
from app_api.platform.access import CurrentAccount
from columns.provident_fund.models import Withdrawal
from columns.provident_fund.service import owned_withdrawal
from identity.api import require_step_up

WITHDRAW_PURPOSE = "provident_fund.withdraw"


async def _withdrawal(withdrawal_id: str, account: CurrentAccount, session: SessionDep) -> Withdrawal:
    return await owned_withdrawal(session, account_id=account.id, withdrawal_id=withdrawal_id)


OwnedWithdrawal = Annotated[Withdrawal, Depends(_withdrawal)]
# L3 proved a moment ago by a face check (or an agent's in-person check), for this purpose only.
StepUpWithdraw = Depends(require_step_up(WITHDRAW_PURPOSE))
