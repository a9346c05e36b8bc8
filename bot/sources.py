"""Where the assistant's answers come from: capabilities other packages offer.

The assistant never keeps its own copy of the catalogue or of anyone's records. It reads them through
the typed capabilities of :mod:`app_api.platform.capabilities`, looked up by protocol:

:class:`~app_api.platform.capabilities.ServiceCatalogue` (the ``gov_services`` column)
    ``search`` → ``[{code, name, score, ...}]``; ``item`` → the guide: ``name``, ``summary``,
    ``conditions``, ``materials`` (``name``, ``required``, ``condition``, ``ecert``, ``auto_filled``),
    ``fee`` (``fee_fen``, ``basis``), ``time_limit`` (``promised_days``, ``statutory_days``),
    ``handling_mode``, ``max_visits``, ``where_to_go``, ``department``, ``office_hours``, ``delivery``,
    ``phone``, ``identity_level``, ``start`` (``deep_link``); ``my_applications`` → ``[{item,
    status_name, status, tracking_no, ...}]``.
:class:`~app_api.platform.capabilities.UtilityBills` (the ``utilities`` column)
    ``unpaid_of`` → bills with ``title``, ``biller``, ``amount_fen``.
:class:`~app_api.platform.capabilities.LiaisonStations` (the platform's agents package)
    ``nearest`` → stations with ``name``, ``address``, ``phone``.

Every call gets the request's ``session``. A capability that is absent gives an honest "cannot look
this up now" answer, never made-up data.
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.capabilities import (
    LiaisonStations,
    ServiceCatalogue,
    UnpaidBill,
    UtilityBills,
    lookup,
)


class Sources:
    """The capabilities for one action call, with the request's database session."""

    def __init__(self, session: AsyncSession | None) -> None:
        self.session = session

    @property
    def catalogue_available(self) -> bool:
        return lookup(ServiceCatalogue) is not None

    async def search(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """Catalogue hits for ``query``, best first (none when the catalogue is absent)."""
        cat = lookup(ServiceCatalogue)
        if cat is None:
            return []
        return await cat.search(query, limit=limit, session=self.session)

    async def item(self, code: str) -> dict[str, Any] | None:
        cat = lookup(ServiceCatalogue)
        if cat is None:
            return None
        return await cat.item(code, session=self.session)

    async def applications(self, account_id: str, limit: int = 5) -> list[dict[str, Any]] | None:
        """The resident's newest applications, or None when the catalogue is absent."""
        cat = lookup(ServiceCatalogue)
        if cat is None:
            return None
        return await cat.my_applications(account_id, limit=limit, session=self.session)

    async def unpaid_bills(self, account_id: str) -> list[UnpaidBill] | None:
        """The resident's unpaid bills, or None when no column offers them."""
        bills = lookup(UtilityBills)
        if bills is None:
            return None
        return await bills.unpaid_of(account_id, session=self.session)

    async def stations(self, city: str | None) -> list[dict[str, Any]] | None:
        """Liaison stations in or near ``city`` (all when None), or None when none are offered."""
        stations = lookup(LiaisonStations)
        if stations is None:
            return None
        return await stations.nearest(city=city, session=self.session)
