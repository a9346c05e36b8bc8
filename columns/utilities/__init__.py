"""水电气缴费: water, power and gas bills of bound household accounts, paid through payments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app_api.platform.capabilities import UnpaidBill, UtilityBills
from app_api.platform.column import Column

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession
    from starlette.types import ASGIApp

column = Column.from_package(__name__)


def _dev_sandbox() -> ASGIApp:
    """The loopback billers this column talks to in development: the app factory mounts them at
    ``/sandbox/utilities`` when the environment is development, where the default settings point.
    The ``sandbox`` package is imported here only; the wheel leaves it out."""
    from columns.utilities.sandbox.demo import dev_app

    return dev_app()


class _UtilityBills:
    """A resident's unpaid bills, for the assistant (``UtilityBills``)."""

    async def unpaid_of(self, account_id: str, *, session: AsyncSession | None = None) -> list[UnpaidBill]:
        from app_api.core.db import session_scope
        from columns.utilities.bills import unpaid_bills

        if session is not None:
            return await unpaid_bills(session, account_id=account_id)
        async with session_scope() as s:
            return await unpaid_bills(s, account_id=account_id)


column.dev_sandbox = _dev_sandbox
column.provide(UtilityBills, _UtilityBills())
