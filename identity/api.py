"""The public module of identity: the only one the columns import from this package.

``require_step_up("loan.apply")`` is a dependency a column puts on a sensitive endpoint. The
client sends the token from a successful face check in the ``X-Step-Up-Token`` header. The token is
for one account and one named purpose, lives 5 minutes, and is spent by the request that presents
it (also when that request then fails for another reason: the resident verifies again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header

from app_api.platform.access import CurrentAccount
from app_api.platform.accounts.principal import Principal
from identity import errors
from identity.purposes import check_purpose
from identity.step_up import consume_step_up

__all__ = ["require_step_up"]


def require_step_up(purpose: str) -> Callable[..., Awaitable[Principal]]:
    check_purpose(purpose)

    async def dep(
        principal: CurrentAccount,
        x_step_up_token: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Principal:
        if not x_step_up_token:
            raise errors.StepUpRequired(purpose=purpose)
        if principal.identity_level < 3 or not await consume_step_up(principal.id, purpose, x_step_up_token):
            raise errors.StepUpInvalid(purpose=purpose)
        return principal

    dep.__name__ = f"require_step_up_{purpose.replace('.', '_')}"
    return dep
