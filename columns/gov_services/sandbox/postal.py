"""Protocol sandbox of the postal waybill API (development and tests).

It verifies the caller's app id and request signature (:mod:`app_api.core.signing`) as the protocol
requires (``docs/adapters/postal.yaml``), creates waybills idempotently on the order id, and
reports tracking. ``POST .../deliver`` is the sandbox's own control to simulate the courier handing
the parcel over. A body that is not a JSON object is answered 400 in the protocol's envelope
(``40012``), like any other bad request.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from app_api.core.signing import verify_request
from columns.gov_services.config import get_config

router = APIRouter()
_waybills: dict[str, dict[str, Any]] = {}
_by_order: dict[str, str] = {}


def postal_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(router)
    return app


def _answer(code: str, msg: str, data: Any = None, status: int = 200) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": data}, status_code=status)


def _protocol_path(request: Request) -> str:
    """The protocol path (``/v1/waybills``), wherever the sandbox is mounted."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path.removeprefix(root) if root and path.startswith(root) else path


async def _verify(request: Request) -> JSONResponse | None:
    cfg = get_config()
    if request.headers.get("x-app-id") != cfg.postal_app_id:
        return _answer("40001", "unknown app id", status=401)
    problem = verify_request(
        request.headers,
        secret=cfg.postal_secret.get_secret_value(),
        method=request.method,
        path=_protocol_path(request),
        body=await request.body(),
    )
    if problem == "stale_timestamp":
        return _answer("40002", "bad or stale timestamp", status=401)
    if problem is not None:
        return _answer("40003", "bad signature", status=401)
    return None


@router.post("/v1/waybills")
async def create_waybill(request: Request) -> JSONResponse:
    if (bad := await _verify(request)) is not None:
        return bad
    try:
        payload = json.loads(await request.body())
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return _answer("40012", "body must be a JSON object", status=400)
    receiver = payload.get("receiver")
    if not isinstance(receiver, dict) or not all(receiver.get(k) for k in ("name", "phone", "address")):
        return _answer("40010", "receiver name, phone and address are required", status=400)
    order_id = str(payload.get("order_id") or "")
    if not order_id:
        return _answer("40011", "order_id required", status=400)
    if order_id in _by_order:
        wb = _waybills[_by_order[order_id]]
    else:
        tracking_no = f"11{secrets.randbelow(10**11):011d}"
        wb = {
            "tracking_no": tracking_no,
            "order_id": order_id,
            "fee_fen": 1200,
            "status": "created",
            "events": [{"at": int(time.time()), "status": "created", "text": "已揽收"}],
        }
        _waybills[tracking_no] = wb
        _by_order[order_id] = tracking_no
    return _answer("0", "ok", {"tracking_no": wb["tracking_no"], "fee_fen": wb["fee_fen"]})


@router.get("/v1/waybills/{tracking_no}")
async def track(tracking_no: str, request: Request) -> JSONResponse:
    if (bad := await _verify(request)) is not None:
        return bad
    wb = _waybills.get(tracking_no)
    if wb is None:
        return _answer("40400", "no such waybill", status=404)
    return _answer("0", "ok", {"status": wb["status"], "events": wb["events"]})


@router.post("/v1/waybills/{tracking_no}/deliver")
async def deliver(tracking_no: str) -> JSONResponse:
    wb = _waybills.get(tracking_no)
    if wb is None:
        return _answer("40400", "no such waybill", status=404)
    wb["status"] = "delivered"
    wb["events"].append({"at": int(time.time()), "status": "delivered", "text": "已签收"})
    return _answer("0", "ok", {"status": "delivered"})
