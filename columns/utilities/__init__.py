"""水电气缴费: water, power and gas bills of bound household accounts, paid through payments."""

from app_api.platform.column import Column

column = Column.from_package(__name__)


def _dev_sandbox() -> object:
    """The loopback stand-in this column talks to in development (an ASGI app): the app factory
    mounts it at ``/sandbox/utilities`` when the environment is development, where the default
    settings point."""
    from columns.utilities.sandbox import dev_app

    return dev_app()


column.provides["dev_sandbox.utilities"] = _dev_sandbox


class _UtilityBills:
    """The ``utility_bills`` capability: a resident's unpaid bills, for the assistant."""

    async def unpaid_of(self, account_id: str, *, session: object | None = None) -> list[dict[str, object]]:
        from sqlmodel.ext.asyncio.session import AsyncSession

        from app_api.core.db import session_scope
        from columns.utilities import service

        async def run(s: AsyncSession) -> list[dict[str, object]]:
            return [
                {
                    "title": f"{service.kind_name(group.binding.kind)} {bill.period}",
                    "biller": group.binding.biller_code,
                    "amount_fen": bill.amount_fen,
                    "due_date": bill.due_date.isoformat(),
                }
                for group in await service.outstanding(s, account_id=account_id)
                for bill in group.bills
                if bill.status == "outstanding"
            ]

        if isinstance(session, AsyncSession):
            return await run(session)
        async with session_scope() as s:
            return await run(s)


column.provides["utility_bills"] = _UtilityBills()
