"""Agents' submissions: applications filed for residents, one at a time or in offline batches.

Each is checked against a mandate, filed through the catalogue (``filing``), recorded with its
client key (a resent one gives back the first result) and told to the resident.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import lock_for_writing as db_lock_for_writing
from app_api.core.db import savepoint
from app_api.core.errors import AppError, ValidationFailed
from app_api.platform import notify
from app_api.platform.accounts.principal import Principal
from app_api.platform.agents import errors, filing, messages
from app_api.platform.agents.actions import record_action
from app_api.platform.agents.mandates import require_mandate
from app_api.platform.agents.models import Submission
from app_api.platform.agents.schemas import BatchOut, SubmissionIn, SubmissionOut
from app_api.platform.agents.stations import agent_station

BATCH_MAX = 100

_ITEM = TypeAdapter(SubmissionIn)


async def submit(session: AsyncSession, *, agent: Principal, item: SubmissionIn) -> SubmissionOut:
    """File one submission for a resident; the same client key gives back the first result."""
    q = select(Submission).where(Submission.agent_id == agent.id, Submission.client_key == item.client_key)
    existing = (await session.exec(q)).first()
    if existing is not None:
        if existing.resident_id != item.resident_id or existing.item_code != item.item_code:
            raise errors.ClientKeyReused(client_key=item.client_key)
        return SubmissionOut(status="duplicate", application=existing.result, submission_id=existing.id)
    mandate, station = await require_mandate(
        session,
        agent=agent,
        resident_id=item.resident_id,
        scope="apply",
        item_code=item.item_code,
        mandate_id=item.mandate_id,
    )
    if item.pickup and "pickup" not in mandate.scopes:
        raise errors.OutOfScope("授权范围不包含：办理结果寄送至代办点代领", scope="pickup")
    delivery = (
        {
            "method": "station",
            "station_id": station.id,
            "station_name": station.name,
            "address": station.address,
        }
        if item.pickup
        else None
    )
    result = await filing.file_on_behalf(
        session,
        resident_id=item.resident_id,
        agent_id=agent.id,
        station_id=station.id,
        mandate_id=mandate.id,
        item_code=item.item_code,
        form=item.form,
        client_key=item.client_key,
        delivery=delivery,
    )
    sub = Submission(
        agent_id=agent.id,
        client_key=item.client_key,
        station_id=station.id,
        resident_id=item.resident_id,
        mandate_id=mandate.id,
        item_code=item.item_code,
        pickup=item.pickup,
        result=result,
    )
    session.add(sub)
    await session.flush()
    await record_action(
        session,
        agent_id=agent.id,
        station_id=station.id,
        resident_id=item.resident_id,
        mandate=mandate,
        action="application_filed",
        subject_id=str(result.get("id")) if result.get("id") else None,
        data={"item_code": item.item_code, "client_key": item.client_key, "pickup": item.pickup},
    )
    await notify.send(
        session,
        account_id=item.resident_id,
        template=messages.APPLICATION_FILED,
        params={
            "station": station.name,
            "item": str(result.get("item_name") or result.get("item") or item.item_code),
            "number": str(result.get("number") or ""),
        },
    )
    return SubmissionOut(status="created", application=result, submission_id=sub.id)


def _problem(e: AppError) -> dict[str, Any]:
    return {"code": e.code, "title": e.title, "detail": e.detail, **e.extra}


async def submit_one_isolated(
    session: AsyncSession, *, agent: Principal, item: SubmissionIn
) -> dict[str, Any]:
    """One submission in its own savepoint: a refused one leaves nothing behind, the others stand."""
    try:
        async with savepoint(session):
            return (await submit(session, agent=agent, item=item)).model_dump()
    except sa.exc.IntegrityError:
        # The same client key filed concurrently by a resent batch: the first one's result stands.
        q = select(Submission).where(
            Submission.agent_id == agent.id, Submission.client_key == item.client_key
        )
        existing = (await session.exec(q)).first()
        if existing is None:
            raise
        return {"status": "duplicate", "application": existing.result, "submission_id": existing.id}
    except AppError as e:
        return {"status": "failed", "error": _problem(e)}  # savepoint() dropped its audit entries


async def lock_for_writing(session: AsyncSession, agent_id: str) -> None:
    """Serialise one agent's submissions, before the first read.

    A device resends a batch whose answer it never got, sometimes while the first is still running:
    the second waits for the first to commit and then finds every client key already filed
    (an advisory lock per agent on PostgreSQL, the write lock on SQLite).
    """
    await db_lock_for_writing(session, f"agents.submit:{agent_id}")


async def submit_batch(session: AsyncSession, *, agent: Principal, items: list[Any]) -> BatchOut:
    """Submissions queued offline: each item is checked and filed on its own, with its own result."""
    await lock_for_writing(session, agent.id)
    await agent_station(session, agent)
    if len(items) > BATCH_MAX:
        raise ValidationFailed(f"每批最多提交{BATCH_MAX}条", max_items=BATCH_MAX)
    results: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, raw in enumerate(items):
        key = raw.get("client_key") if isinstance(raw, dict) else None
        try:
            item = _ITEM.validate_python(raw)
        except ValidationError as e:
            fields = [{"loc": [str(x) for x in err["loc"]], "msg": err["msg"]} for err in e.errors()]
            results.append(
                {
                    "index": index,
                    "client_key": key,
                    "status": "failed",
                    "error": {
                        "code": "app.validation_failed",
                        "title": "提交的信息有误，请检查后重试",
                        "errors": fields,
                    },
                }
            )
            continue
        if item.client_key in seen:
            results.append(
                {
                    "index": index,
                    "client_key": item.client_key,
                    "status": "failed",
                    "error": _problem(
                        errors.ClientKeyReused("同一批次中提交编号重复", client_key=item.client_key)
                    ),
                }
            )
            continue
        seen.add(item.client_key)
        out = await submit_one_isolated(session, agent=agent, item=item)
        results.append({"index": index, "client_key": item.client_key, **out})
    summary = {s: sum(1 for r in results if r["status"] == s) for s in ("created", "duplicate", "failed")}
    return BatchOut(results=results, summary=summary)
