"""Filing through the government-services catalogue: agents' submissions become applications.

The government-services column files applications; the platform must not import it. It offers the
``ServiceCatalogue`` capability (``app_api.platform.capabilities``), looked up at call time: absent
(the column disabled or not installed), agents get an honest ``agents.filing_unavailable``.

The catalogue files inside the caller's transaction, idempotently on ``(resident_id, client_key)``
(agents resend when connections drop), refuses with ``AppError`` subclasses (unknown item, missing
fields) and records ``agent_id`` on the application. What it returns is stored with the submission
(a JSON column), so dates and times are kept as ISO text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.agents.errors import FilingUnavailable
from app_api.platform.capabilities import ServiceCatalogue, lookup


def catalogue() -> ServiceCatalogue | None:
    """The catalogue offered in this deployment, or None."""
    return lookup(ServiceCatalogue)


def _plain(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in result.items()}


async def file_on_behalf(
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
) -> dict[str, Any]:
    """``delivery`` is ``{"method": "station", "station_id", "station_name", "address"}`` when the
    result is posted to the station for pick-up, else None."""
    cat = catalogue()
    if cat is None:
        raise FilingUnavailable()
    filed = await cat.file_on_behalf(
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
    return _plain(filed)


async def applications_of(session: AsyncSession, resident_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The resident's applications, newest first."""
    cat = catalogue()
    if cat is None:
        raise FilingUnavailable("办理进度查询暂未开通")
    return list(await cat.my_applications(resident_id, limit=limit, session=session))


async def upload_on_behalf(
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
    """A material for one of the resident's applications (a supplement asked for by the reviewer);
    the catalogue checks that the application is the resident's and the content like a resident's upload."""
    cat = catalogue()
    if cat is None:
        raise FilingUnavailable("代办上传材料暂未开通")
    uploaded = await cat.upload_on_behalf(
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
    return _plain(uploaded)
