from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app_api.core.db import SessionDep
from app_api.platform.access import CurrentAccount
from columns.utilities.bindings import owned_binding
from columns.utilities.models import Binding, Payment
from columns.utilities.paying import owned_payment


async def _binding(binding_id: str, account: CurrentAccount, session: SessionDep) -> Binding:
    return await owned_binding(session, account_id=account.id, binding_id=binding_id)


async def _payment(payment_id: str, account: CurrentAccount, session: SessionDep) -> Payment:
    return await owned_payment(session, account_id=account.id, payment_id=payment_id)


OwnedBinding = Annotated[Binding, Depends(_binding)]
OwnedPayment = Annotated[Payment, Depends(_payment)]
