"""Protocol sandbox of the city data exchange platform (mounted at /sandbox/datahub in development).

It checks the caller's signature and timestamp (``app_api.core.signing``) as the platform would,
then answers from the seeded records, so ``HttpDatahub`` is exercised over real HTTP.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app_api.core.db import sessionmaker
from app_api.core.settings import get_settings
from app_api.core.signing import verify_request
from app_api.platform.access import public
from app_api.platform.datahub.service import LocalDatahub, PersonRecord

PREFIX = "/sandbox/datahub"
router = APIRouter(tags=["sandbox"], include_in_schema=False)


def person_json(p: PersonRecord) -> dict[str, Any]:
    d = asdict(p)
    d["birth_date"] = p.birth_date.isoformat()
    d["photo"] = base64.b64encode(p.photo).decode() if p.photo else None
    return d


def _answer(code: str, msg: str, data: Any = None, status: int = 200) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": data}, status_code=status)


async def _verified(request: Request) -> dict[str, Any] | JSONResponse:
    body = await request.body()
    problem = verify_request(
        request.headers,
        secret=get_settings().datahub_app_key.get_secret_value(),
        method="POST",
        path=request.url.path.removeprefix(PREFIX),
        body=body,
    )
    if problem == "stale_timestamp":
        return _answer("40101", "timestamp expired", status=401)
    if problem == "bad_signature":
        return _answer("40102", "bad signature", status=401)
    try:
        payload: dict[str, Any] = json.loads(body)
    except ValueError:
        return _answer("40001", "bad json", status=400)
    return payload


@router.post("/v1/population/query", dependencies=[Depends(public)])
async def population(request: Request) -> JSONResponse:
    p = await _verified(request)
    if isinstance(p, JSONResponse):
        return p
    async with sessionmaker()() as s:
        rec = await LocalDatahub().person(s, str(p.get("id_number", "")))
    if rec is None:
        return _answer("40400", "not found", status=404)
    return _answer("0", "ok", person_json(rec))


@router.post("/v1/legal-person/query", dependencies=[Depends(public)])
async def legal_person(request: Request) -> JSONResponse:
    p = await _verified(request)
    if isinstance(p, JSONResponse):
        return p
    async with sessionmaker()() as s:
        recs = await LocalDatahub().legal_persons(s, str(p.get("legal_rep_id_number", "")))
    items = [{**asdict(r), "established_on": r.established_on.isoformat()} for r in recs]
    return _answer("0", "ok", {"items": items})


@router.post("/v1/certificate/query", dependencies=[Depends(public)])
async def certificate(request: Request) -> JSONResponse:
    p = await _verified(request)
    if isinstance(p, JSONResponse):
        return p
    async with sessionmaker()() as s:
        recs = await LocalDatahub().certificates(s, str(p.get("holder_id_number", "")))
    items = [
        {
            **asdict(r),
            "issued_on": r.issued_on.isoformat(),
            "valid_until": r.valid_until.isoformat() if r.valid_until else None,
        }
        for r in recs
    ]
    return _answer("0", "ok", {"items": items})
