"""Protocol sandbox of the city data exchange platform (mounted at /sandbox/datahub in development).

It is the reference implementation of this project's proposed data-exchange protocol
(``docs/adapters/datahub.yaml``), not a copy of any real platform: it checks the caller's signature
and timestamp (``app_api.core.signing``) as that protocol requires, then answers population and
legal-person queries from the seeded records, and certificates from a library of its own
(``library``: issue, revoke, query), so ``HttpDatahub`` is exercised over real HTTP.
``python -m app_api.platform.datahub.sandbox.serve --port P`` serves it as a process of its own.
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
from app_api.platform.datahub.sandbox.library import Conflict, Library
from app_api.platform.datahub.service import LocalDatahub, PersonRecord

PREFIX = "/sandbox/datahub"
router = APIRouter(tags=["sandbox"], include_in_schema=False)
library = Library()


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
    items = await library.of_holder(str(p.get("holder_id_number", "")))
    return _answer("0", "ok", {"items": items})


ISSUE_FIELDS = ("cert_no", "holder_id_number", "cert_type", "title", "issuer", "issued_on")


@router.post("/v1/certificate/issue", dependencies=[Depends(public)])
async def issue(request: Request) -> JSONResponse:
    """Write a certificate into the library; the same number again with the same contents is a no-op."""
    p = await _verified(request)
    if isinstance(p, JSONResponse):
        return p
    missing = [k for k in ISSUE_FIELDS if not p.get(k)]
    if missing:
        return _answer("40002", f"missing {','.join(missing)}", status=400)
    try:
        rec = await library.issue(p)
    except Conflict:
        return _answer("40900", "cert_no exists with other contents", status=409)
    except ValueError:
        return _answer("40003", "bad date", status=400)
    return _answer("0", "ok", {"cert_no": rec["cert_no"], "status": rec["status"]})


@router.post("/v1/certificate/revoke", dependencies=[Depends(public)])
async def revoke(request: Request) -> JSONResponse:
    p = await _verified(request)
    if isinstance(p, JSONResponse):
        return p
    if not await library.revoke(str(p.get("cert_no", "")), str(p.get("reason", ""))):
        return _answer("40901", "no such certificate", status=409)
    return _answer("0", "ok", {"cert_no": p["cert_no"], "status": "revoked"})


@router.get("/_sandbox/certificates/{cert_no}", dependencies=[Depends(public)])
async def inspect(cert_no: str) -> JSONResponse:
    """Development only: one certificate as the library holds it, with how many issue requests it got."""
    rec = await library.get(cert_no)
    if rec is None:
        return _answer("40400", "not found", status=404)
    return _answer("0", "ok", rec)
