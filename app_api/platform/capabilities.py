"""Capabilities: what one package offers another without importing it, looked up by type.

A capability is a ``Protocol`` declared here, in the platform layer, so that its users (the agents'
filing, the assistant) and its providers (columns) depend on the declaration, never on each other.
A column offers one with ``column.provide(ServiceCatalogue, impl)`` in its package ``__init__``; the
platform offers its own with :func:`provide`. Users call :func:`lookup` and treat ``None`` as
"not offered in this deployment" (an honest 503 or "cannot look this up now", never made-up data).

Methods take the caller's session (``session=None`` opens one), so a filing happens inside the
caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypedDict, TypeVar, cast, runtime_checkable

from sqlmodel.ext.asyncio.session import AsyncSession

T = TypeVar("T")


class FiledApplication(TypedDict):
    id: str
    number: str
    status: str


class UnpaidBill(TypedDict):
    title: str
    biller: str
    amount_fen: int
    due_date: str


@runtime_checkable
class ServiceCatalogue(Protocol):
    """The government-services catalogue and applications (offered by the ``gov_services`` column)."""

    async def search(
        self, query: str, *, limit: int = 5, session: AsyncSession | None = None
    ) -> list[dict[str, Any]]:
        """Items matching ``query`` (Chinese, pinyin, typos): ``[{code, name, score, ...}]``."""
        ...

    async def item(self, code: str, *, session: AsyncSession | None = None) -> dict[str, Any] | None:
        """The item's guide: name, summary, conditions, materials, fee, time limit, where to go..."""
        ...

    async def my_applications(
        self, account_id: str, *, limit: int = 10, session: AsyncSession | None = None
    ) -> list[dict[str, Any]]:
        """The resident's newest applications: ``[{item, status_name, number, tracking_no, ...}]``."""
        ...

    async def applications_of_residents(
        self, account_ids: Sequence[str], *, limit: int = 10, session: AsyncSession | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """:meth:`my_applications` of several residents in one call (a station's filings page):
        ``{account_id: [its newest applications, as my_applications lists them]}``, every id a key."""
        ...

    async def file_on_behalf(
        self,
        session: AsyncSession,
        *,
        resident_id: str,
        agent_id: str,
        station_id: str,
        mandate_id: str,
        item_code: str,
        form: dict[str, Any],
        client_key: str,
        delivery: dict[str, Any] | None,
    ) -> FiledApplication:
        """An agent's filing for a resident, idempotent on ``(resident_id, client_key)``.

        ``delivery`` is ``{"method": "station", "station_id", "station_name", "address"}`` when the
        result is posted to the station for pick-up. Refusals are ``AppError`` subclasses.
        """
        ...

    async def upload_on_behalf(
        self,
        session: AsyncSession,
        *,
        resident_id: str,
        agent_id: str,
        station_id: str,
        mandate_id: str,
        application_id: str,
        material: str,
        filename: str,
        content_type: str | None,
        data: bytes,
    ) -> dict[str, Any]:
        """A material for one of the resident's applications, checked like a resident's upload."""
        ...


@runtime_checkable
class UtilityBills(Protocol):
    """A resident's unpaid utility bills (offered by the ``utilities`` column)."""

    async def unpaid_of(
        self, account_id: str, *, session: AsyncSession | None = None
    ) -> list[UnpaidBill]: ...


@runtime_checkable
class LiaisonStations(Protocol):
    """Agents' stations near a city (offered by the platform's agents package)."""

    async def nearest(
        self, *, city: str | None, session: AsyncSession | None = None
    ) -> list[dict[str, Any]]: ...


@runtime_checkable
class ConditionsGuide(Protocol):
    """The catalogue's side of the assistant's conditions walk-through (``bot.walkthrough``; offered
    by the ``gov_services`` column, ``columns.gov_services.assist.GovConditionsGuide``)."""

    async def questions(
        self, code: str, *, account_id: str | None, session: AsyncSession
    ) -> dict[str, Any] | None:
        """``{code, name, known: [text], questions: [{key, text, options: [{title, value}],
        number?}]}``, only what the resident's verified data leaves open; None: no such item."""
        ...

    async def assess(
        self, code: str, *, account_id: str | None, answers: dict[str, str], session: AsyncSession
    ) -> dict[str, Any] | None:
        """``{name, verdict: met | unmet | review, checks: [{explain, status, reason, hard}],
        review: [text], materials: [name], fields}``; None: no such item."""
        ...

    async def draft(
        self, code: str, *, account_id: str, answers: dict[str, str], client_key: str, session: AsyncSession
    ) -> dict[str, Any]:
        """The resident's application draft with the answers: ``{id, number, deep_link}``."""
        ...

    async def discard_draft(self, app_id: str, *, account_id: str, session: AsyncSession) -> str:
        """Remove a draft :meth:`draft` made that the resident never took up: ``removed``, ``kept``
        (submitted or changed since), ``gone`` (no such draft of theirs). Idempotent."""
        ...


_provided: dict[type, object] = {}


def provide(protocol: type[T], impl: T) -> None:
    if getattr(protocol, "_is_runtime_protocol", False) and not isinstance(impl, protocol):
        raise TypeError(f"{impl!r} does not implement {protocol.__name__}")
    _provided[protocol] = impl


def withdraw(protocol: type[Any]) -> object | None:
    """Remove a capability (a column disabled at run time; tests of its absence)."""
    return _provided.pop(protocol, None)


def lookup(protocol: type[T]) -> T | None:
    impl = _provided.get(protocol)
    return None if impl is None else cast(T, impl)  # stored under its own protocol by provide()
