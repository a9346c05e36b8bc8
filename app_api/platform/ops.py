"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client import multiprocess as prom_mp
from pydantic import BaseModel

from app_api.core.component import Component, Mount
from app_api.core.db import get_engine
from app_api.core.errors import AppError, ServiceUnavailable
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings
from app_api.platform import ops_jobs
from app_api.platform.access import public

router = APIRouter(tags=["ops"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
    ms: float


class MetricsTokenRequired(AppError):
    code = "ops.metrics_token_required"
    title = "需要监控令牌"
    status = 401


class NotReady(ServiceUnavailable):
    code = "ops.not_ready"
    title = "服务尚未就绪"


@router.get("/healthz", dependencies=[Depends(public)])
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", dependencies=[Depends(public)])
async def readyz() -> Readiness:
    """Readiness: the database and Redis answer."""
    checks: dict[str, str] = {}
    t = time.perf_counter()
    try:
        async with get_engine().connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:
        checks["database"] = f"error: {type(e).__name__}"
    try:
        await (await get_redis()).ping()
        checks["redis"] = "ok"
    except Exception as e:
        checks["redis"] = f"error: {type(e).__name__}"
    if any(v != "ok" for v in checks.values()):
        raise NotReady(checks=checks)
    return Readiness(status="ready", checks=checks, ms=round((time.perf_counter() - t) * 1000, 2))


@router.get("/metrics", dependencies=[Depends(public)], include_in_schema=False)
async def metrics(authorization: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus metrics (aggregated across workers when PROMETHEUS_MULTIPROC_DIR is set).

    With ``WOJIA_METRICS_TOKEN`` set, only a scraper that sends it as a bearer token gets them;
    outside development the api does not start without it (``Settings.serving_problems``), so
    ``/metrics`` is open in development and test only.
    """
    import os

    token = get_settings().metrics_token
    if token is not None:
        sent = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
            raise MetricsTokenRequired()

    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


component = Component(name="app_api.platform.ops", routers=(Mount(router, prefix=""), Mount(ops_jobs.router)))
