"""The narrow interface through which agents' submissions become applications.

The government-services column files applications; the platform must not import it. It offers the
filing as a capability, found at call time:

- ``get_capability("agent_filing")``: a callable, or an object with ``file_on_behalf``;
- otherwise ``file_on_behalf`` on the ``service_catalogue`` capability.

The call (async or sync), inside the caller's transaction::

    file_on_behalf(session, *, resident_id, agent_id, station_id, mandate_id, item_code, form,
                   client_key, delivery) -> {"id", "number", "status", ...}

``delivery`` is ``{"method": "station", "station_id", "station_name", "address"}`` when the
result is to be posted to the station for pick-up, else None. The filer must be idempotent on
``(resident_id, client_key)`` (agents resend when connections drop), raise ``AppError`` subclasses
for refusals (unknown item, missing fields), and record ``agent_id`` on the application.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Mapping
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.agents.errors import FilingUnavailable
from app_api.platform.column import get_capability

CAPABILITY = "agent_filing"


def filer() -> Any | None:
    cap = get_capability(CAPABILITY)
    if cap is not None:
        return cap if callable(cap) and not hasattr(cap, "file_on_behalf") else cap.file_on_behalf
    cat = get_capability("service_catalogue")
    fn = getattr(cat, "file_on_behalf", None) if cat is not None else None
    return fn if callable(fn) else None


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
    fn = filer()
    if fn is None:
        raise FilingUnavailable()
    result = fn(
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
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, Mapping):
        out = dict(result)
    else:
        out = {k: getattr(result, k) for k in ("id", "number", "status") if hasattr(result, k)}
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in out.items()}


async def applications_of(
    session: AsyncSession, resident_id: str, limit: int = 20
) -> list[dict[str, Any]] | None:
    """The resident's applications through the catalogue capability, or None if it is absent."""
    cat = get_capability("service_catalogue")
    fn = getattr(cat, "my_applications", None) if cat is not None else None
    if fn is None:
        return None
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {"limit": limit}
    if "session" in params:
        kwargs["session"] = session
    result = fn(resident_id, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return list(result)


def uploader() -> Any | None:
    for cap in (get_capability(CAPABILITY), get_capability("service_catalogue")):
        fn = getattr(cap, "upload_on_behalf", None) if cap is not None else None
        if callable(fn):
            return fn
    return None


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
    """A material for one of the resident's applications (a supplement asked for by the reviewer).

    Offered as ``upload_on_behalf`` on the same capability as ``file_on_behalf``; it must check
    that the application belongs to ``resident_id`` and check the content like a resident's upload.
    """
    fn = uploader()
    if fn is None:
        raise FilingUnavailable("代办上传材料暂未开通")
    result = fn(
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
    if inspect.isawaitable(result):
        result = await result
    out: dict[str, Any] = dict(result) if isinstance(result, Mapping) else {"id": getattr(result, "id", None)}
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in out.items()}
