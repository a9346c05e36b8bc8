"""The ``ServiceCatalogue`` capability (``app_api.platform.capabilities``): what the assistant
(bot/) may ask the catalogue, and the agents' filing for a resident.

Everything answers from the same database catalogue and search index residents use; calls take an
optional session (the assistant's webhook has one) and otherwise open their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.money import fen_to_yuan
from app_api.platform.capabilities import FiledApplication
from columns.gov_services import applications, catalogue_store, on_behalf
from columns.gov_services.catalogue import CatalogueItem
from columns.gov_services.models import STATUS_NAMES, Application

API = "/api/v1/columns/gov_services"


def _listed(a: Application) -> dict[str, Any]:
    """One application as ``my_applications`` lists it."""
    return {
        "id": a.id,
        "number": a.number,
        "item": a.item_name,
        "status": a.status,
        "status_name": STATUS_NAMES[a.status],
        "submitted_at": a.submitted_at.isoformat() if a.submitted_at else None,
        "due_at": a.due_at.isoformat() if a.due_at else None,
        "tracking_no": a.tracking_no,
    }


def _fee(item: CatalogueItem) -> dict[str, Any]:
    return {
        "fee_fen": item.fee_fen,
        "free": item.fee_fen == 0,
        "text": "免费" if item.fee_fen == 0 else f"{fen_to_yuan(item.fee_fen)}元",
        "basis": item.fee_basis,
    }


class FiledGovApplication(FiledApplication):
    """What a filing for a resident answers: the platform's ``FiledApplication`` and more."""

    item_name: str
    delivery: str | None
    due_at: dt.datetime | None


class GovServiceCatalogue:
    """Search, guides, and a resident's applications, for the assistant; filing for the agents.

    Implements ``app_api.platform.capabilities.ServiceCatalogue``; ``fits``, ``materials``, ``fee``,
    ``time_limit``, ``where_to_go`` and ``start_link`` are extras the assistant uses.
    """

    @asynccontextmanager
    async def _session(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        if session is not None:
            yield session
            return
        from app_api.core.db import session_scope

        async with session_scope() as s:
            yield s

    async def search(
        self,
        query: str,
        *,
        department: str | None = None,
        item_type: str | None = None,
        limit: int = 5,
        session: AsyncSession | None = None,
    ) -> list[dict[str, Any]]:
        async with self._session(session) as s:
            index, items = await catalogue_store.catalogue_snapshot(s)
        return [
            {
                "code": h.code,
                "name": h.name,
                "score": h.score,
                "department": items[h.code].department,
                "fully_online": items[h.code].fully_online,
            }
            for h in index.search(query, department=department, item_type=item_type, limit=limit)
        ]

    async def fits(self, need: str, *, session: AsyncSession | None = None) -> dict[str, Any] | None:
        """The item that best fits a need in the resident's words ("我退休了想取公积金"), if any fits."""
        hits = await self.search(need, limit=3, session=session)
        if not hits or hits[0]["score"] < 75:
            return None
        best = await self.item(hits[0]["code"], session=session)
        return {**(best or {}), "alternatives": hits[1:]}

    async def item(self, code: str, *, session: AsyncSession | None = None) -> dict[str, Any] | None:
        """The guide in short: materials, fee, time limit, where to go, fully online, deep link."""
        async with self._session(session) as s:
            _, items = await catalogue_store.catalogue_snapshot(s)
        item = items.get(code)
        if item is None:
            return None
        return {
            "code": item.code,
            "name": item.name,
            "department": item.department,
            "item_type": item.item_type,
            "summary": item.summary,
            "conditions": list(item.conditions),
            "materials": [
                {
                    "name": m.name,
                    "required": m.required and not m.condition,
                    "condition": m.condition,
                    "ecert": m.ecert,
                    "auto_filled": bool(m.fill_fields),
                }
                for m in item.materials
            ],
            "fee": _fee(item),
            "time_limit": {"promised_days": item.promised_days, "statutory_days": item.statutory_days},
            "fully_online": item.fully_online,
            "handling_mode": item.handling_mode,
            "max_visits": item.max_visits,
            "where_to_go": item.where_to_go,
            "office_hours": item.office_hours,
            "delivery": list(item.delivery),
            "phone": item.consult_phone,
            "identity_level": item.identity_level,
            "start": self.start_link(code),
        }

    async def materials(
        self, code: str, *, session: AsyncSession | None = None
    ) -> list[dict[str, Any]] | None:
        found = await self.item(code, session=session)
        return found["materials"] if found else None

    async def fee(self, code: str, *, session: AsyncSession | None = None) -> dict[str, Any] | None:
        found = await self.item(code, session=session)
        return found["fee"] if found else None

    async def time_limit(self, code: str, *, session: AsyncSession | None = None) -> dict[str, Any] | None:
        found = await self.item(code, session=session)
        return found["time_limit"] if found else None

    async def where_to_go(self, code: str, *, session: AsyncSession | None = None) -> dict[str, Any] | None:
        found = await self.item(code, session=session)
        if found is None:
            return None
        return {
            k: found[k]
            for k in ("fully_online", "handling_mode", "max_visits", "where_to_go", "office_hours")
        }

    def start_link(self, code: str) -> dict[str, str]:
        """Where the app starts a one-tap application of this item."""
        return {
            "deep_link": f"wojia://columns/gov_services/apply?item={code}",
            "api": f"{API}/applications",
            "guide": f"{API}/items/{code}",
        }

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
    ) -> FiledGovApplication:
        """The agents' filing contract (``app_api.platform.agents.filing``), in the caller's transaction."""
        app = await on_behalf.file_on_behalf(
            session,
            resident_id=resident_id,
            agent_id=agent_id,
            station_id=station_id,
            mandate_id=mandate_id,
            item_code=item_code,
            form=form,
            client_key=client_key,
            delivery=delivery,
        )
        return FiledGovApplication(
            id=app.id,
            number=app.number,
            status=app.status,
            item_name=app.item_name,
            delivery=app.delivery,
            due_at=app.due_at,
        )

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
        """A material an agent uploads for one of the resident's applications, in the caller's transaction."""
        upload = await on_behalf.upload_on_behalf(
            session,
            resident_id=resident_id,
            agent_id=agent_id,
            station_id=station_id,
            mandate_id=mandate_id,
            application_id=application_id,
            material=material,
            filename=filename,
            content_type=content_type,
            data=data,
        )
        return {
            "id": upload.id,
            "material": upload.material,
            "filename": upload.filename,
            "kind": upload.kind,
            "size": upload.size,
            "created_at": upload.created_at,
        }

    async def my_applications(
        self, account_id: str, *, limit: int = 10, session: AsyncSession | None = None
    ) -> list[dict[str, Any]]:
        """The resident's applications and their status (only the asking resident's own)."""
        async with self._session(session) as s:
            apps = await applications.my_applications(s, account_id=account_id, limit=limit)
        return [_listed(a) for a in apps]

    async def applications_of_residents(
        self, account_ids: Sequence[str], *, limit: int = 10, session: AsyncSession | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """:meth:`my_applications` of each resident, in one query: each one's ``limit`` newest
        (``created_at`` then ``id``, descending, as ``applications.my_applications`` pages them)."""
        ids = list(dict.fromkeys(account_ids))
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if not ids or limit < 1:
            return out
        rank = (
            sa.func.row_number()
            .over(
                partition_by=Application.applicant_id,
                order_by=(col(Application.created_at).desc(), col(Application.id).desc()),
            )
            .label("rank")
        )
        # The rows ranked where they are read (by the applicant index), not joined back to the table.
        ranked = select(Application, rank).where(col(Application.applicant_id).in_(ids)).subquery()
        row = aliased(Application, ranked)
        q = select(row).where(ranked.c.rank <= limit).order_by(ranked.c.created_at.desc(), ranked.c.id.desc())
        async with self._session(session) as s:
            for a in (await s.exec(q)).all():
                out[a.applicant_id].append(_listed(a))
        return out
