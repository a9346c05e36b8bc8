"""Where the assistant's answers come from: capabilities other packages offer.

The assistant never keeps its own copy of the catalogue or of anyone's records. It reads them through
named capabilities (``app_api.platform.column.get_capability``):

``service_catalogue`` (``columns.gov_services.capability.ServiceCatalogue``)
    ``search(query, *, limit)`` → ``[{code, name, score, ...}]``;
    ``item(code)`` → the guide: ``name``, ``summary``, ``conditions``, ``materials`` (``name``,
    ``required``, ``condition``, ``ecert``, ``auto_filled``), ``fee`` (``fee_fen``, ``basis``),
    ``time_limit`` (``promised_days``, ``statutory_days``), ``handling_mode``, ``max_visits``,
    ``where_to_go``, ``office_hours``, ``delivery``, ``phone``, ``identity_level``, ``start``
    (``deep_link``);
    ``my_applications(account_id, *, limit)`` → ``[{item, status_name, number, tracking_no, ...}]``.
``utility_bills`` (offered by the utilities column)
    ``unpaid_of(account_id)`` → bills with ``title`` or ``biller``, ``amount_fen``.
``liaison_stations`` (not offered yet)
    ``nearest(city=...)`` → stations with ``name``, ``address``, ``phone``.

Methods may be sync or async and get the request's ``session`` when they accept one. A capability
that is absent gives an honest "cannot look this up now" answer, never made-up data.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app_api.platform.column import get_capability

SERVICE_CATALOGUE = "service_catalogue"
UTILITY_BILLS = "utility_bills"
LIAISON_STATIONS = "liaison_stations"


def field(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute or mapping key: capabilities may hand back models, dataclasses or dicts."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


async def _call(fn: Any, *args: Any, session: AsyncSession | None, **kwargs: Any) -> Any:
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "session" in params:
        kwargs["session"] = session
    kwargs = {
        k: v
        for k, v in kwargs.items()
        if k in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    }
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def _method(provider: Any, *names: str) -> Any | None:
    for n in names:
        fn = getattr(provider, n, None)
        if callable(fn):
            return fn
    return None


class Sources:
    """The capabilities for one action call, with the request's database session."""

    def __init__(self, session: AsyncSession | None) -> None:
        self.session = session

    @property
    def catalogue_available(self) -> bool:
        return get_capability(SERVICE_CATALOGUE) is not None

    async def search(self, query: str, limit: int = 5) -> list[Any]:
        cat = get_capability(SERVICE_CATALOGUE)
        fn = _method(cat, "search") if cat is not None else None
        if fn is None:
            return []
        return list(await _call(fn, query, session=self.session, limit=limit))

    async def item(self, code: str) -> Any | None:
        cat = get_capability(SERVICE_CATALOGUE)
        fn = _method(cat, "get", "item", "get_item") if cat is not None else None
        if fn is None:
            return None
        return await _call(fn, code, session=self.session)

    async def applications(self, account_id: str, limit: int = 5) -> list[Any] | None:
        cat = get_capability(SERVICE_CATALOGUE)
        fn = _method(cat, "my_applications", "applications_of") if cat is not None else None
        if fn is None:
            return None
        return list(await _call(fn, account_id, session=self.session, limit=limit))

    async def unpaid_bills(self, account_id: str) -> list[Any] | None:
        cap = get_capability(UTILITY_BILLS)
        fn = _method(cap, "unpaid_of", "unpaid_for", "unpaid") if cap is not None else None
        if fn is None:
            return None
        return list(await _call(fn, account_id, session=self.session))

    async def stations(self, city: str | None) -> list[Any] | None:
        cap = get_capability(LIAISON_STATIONS)
        fn = _method(cap, "nearest", "list", "stations") if cap is not None else None
        if fn is None:
            return None
        return list(await _call(fn, session=self.session, city=city))
