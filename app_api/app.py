"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute, APIRouter
from starlette.exceptions import HTTPException as StarletteHTTPException

from app_api.access_walk import access_kinds, is_open
from app_api.accounts.errors import ConsoleLoginRequired
from app_api.errors import (
    PROBLEM_JSON,
    AppError,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    ValidationFailed,
)
from app_api.home.loader import discover
from app_api.home.router import column_gate
from app_api.home.service import Registry
from app_api.logging import configure_logging, request_id_var
from app_api.middleware import RequestContextMiddleware
from app_api.settings import Settings, get_settings

log = logging.getLogger(__name__)
API = "/api/v1"

# Platform packages that serve routes: "module:attribute". Each is part of the app; an import
# error here is a bug, not a skipped plugin.
PLATFORM_ROUTERS: list[tuple[str, str]] = [
    ("app_api.accounts.router:router", API),
    ("app_api.console:router", API),  # browser sessions of the staff consoles
    ("app_api.home.router:router", API),
    ("app_api.home.router:admin_router", API),
    ("app_api.datahub.router:router", API),
    ("app_api.notify:router", API),
    ("app_api.audit.router:router", API),
    ("app_api.consent.router:router", API),
    ("app_api.ops:router", ""),
    ("payments.router:router_all", API),  # its sandboxes: mount_dev_sandboxes
    ("identity.router:router", API),
    ("bot.router:router", API),
    ("miniprogram_bridge.router:router", API),
    ("app_api.agents.router:router", API),
]
DEV_ROUTERS: list[tuple[str, str]] = [
    ("app_api.accounts.router:dev_router", API),
    ("app_api.datahub.sandbox:router", "/sandbox/datahub"),
    ("identity.sandbox:build_router", "/sandbox/realperson"),
    ("miniprogram_bridge.dev:wechat_router", "/sandbox/wechat"),
    ("miniprogram_bridge.dev:alipay_router", "/sandbox/alipay"),
]


def _import(ref: str) -> Any:
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)


def _problem(err: AppError, request: Request) -> JSONResponse:
    return JSONResponse(
        err.to_problem(instance=request.url.path, request_id=request_id_var.get()),
        status_code=err.status,
        media_type=PROBLEM_JSON,
        headers={"retry-after": str(err.extra["retry_after"])} if "retry_after" in err.extra else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def on_app_error(request: Request, exc: AppError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("upstream or availability error: %s", exc)
        return _problem(exc, request)

    @app.exception_handler(ConsoleLoginRequired)
    async def on_console_login(request: Request, exc: ConsoleLoginRequired) -> Response:
        # A console page opened without a live session: try the refresh cookie (which falls
        # through to the login page), then come back. Form posts cannot be replayed: 401.
        if request.method in {"GET", "HEAD"}:
            from app_api.console import refresh_url

            query = request.url.query
            return RedirectResponse(
                refresh_url(request.url.path + (f"?{query}" if query else "")),
                status_code=303,
                headers={"cache-control": "no-store"},
            )
        return _problem(exc, request)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            return _problem(BadRequest("请求内容不是有效的 JSON", code_detail="json_invalid"), request)
        fields = [
            {"loc": [str(x) for x in e.get("loc", ())], "type": e.get("type"), "msg": e.get("msg")}
            for e in errs
        ]
        return _problem(ValidationFailed(errors=fields), request)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _problem(NotFound("请求的地址不存在"), request)
        if exc.status_code == 405:
            return _problem(MethodNotAllowed(), request)
        err = AppError(str(exc.detail))
        err.status = exc.status_code  # type: ignore[misc]
        return _problem(err, request)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _problem(InternalError(), request)


def mount_columns(app: FastAPI, settings: Settings) -> Registry:
    loaded = discover(strict=settings.strict_columns)
    for slug, router in loaded.routers.items():
        prefix = f"{API}/columns/{slug}"
        open_endpoints = {
            route.endpoint
            for route in router.routes
            if isinstance(route, APIRoute) and is_open(access_kinds(route.dependant))
        }
        gate = column_gate(slug, open_endpoints, loaded.columns[slug].manifest.identity_level)
        app.include_router(router, prefix=prefix, dependencies=[Depends(gate)], tags=[f"column:{slug}"])
    return Registry(loaded.columns, loaded.broken)


def mount_dev_sandboxes(app: FastAPI) -> None:
    """Development: serve the loopback sandboxes of the external systems the default settings point at.

    Platform packages mount theirs by name; a column offers its own as the capability
    ``dev_sandbox.<slug>`` (a factory returning an ASGI app), mounted at ``/sandbox/<slug>``.
    """
    from payments.router import mount_sandboxes

    mount_sandboxes(app)
    for column in app.state.columns.columns.values():
        for name, factory in column.provides.items():
            if name.startswith("dev_sandbox."):
                app.mount(f"/sandbox/{name.removeprefix('dev_sandbox.')}", factory())


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    from app_api.db import dispose_engine
    from app_api.http import close_http
    from app_api.jobs import broker, scheduler
    from app_api.jobs.runtime import import_task_modules
    from app_api.redis import close_redis

    settings = get_settings()
    import_task_modules(app.state.columns)
    background: list[asyncio.Task[Any]] = []
    if settings.embedded_jobs:
        # The embedded default: the worker and the scheduler live in the api process.
        await broker.startup()
        from taskiq.cli.scheduler.run import SchedulerLoop

        await scheduler.startup()
        background.append(asyncio.create_task(SchedulerLoop(scheduler).run(skip_first_run=True)))
    elif not broker.is_worker_process:
        await broker.startup()
    import identity
    from app_api.cache import listen_forever

    await identity.startup()

    background.append(asyncio.create_task(listen_forever()))
    try:
        yield
    finally:
        for t in background:
            t.cancel()
        await identity.shutdown()
        from app_api.jobs.outbox import flush_marks

        await flush_marks()
        with contextlib.suppress(Exception):
            await broker.shutdown()
        await close_http()
        await close_redis()
        await dispose_engine()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(json=settings.log_json)
    app = FastAPI(
        title=f"我家{settings.city_name} Wojia API",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, max_body=settings.max_body_bytes, max_upload=settings.max_upload_bytes
    )
    routers = PLATFORM_ROUTERS + (DEV_ROUTERS if settings.is_dev else [])
    for ref, prefix in routers:
        router = _import(ref)
        # A sandbox may be built by a factory (its keys are generated at start).
        app.include_router(router if isinstance(router, APIRouter) else router(), prefix=prefix)
    app.state.columns = mount_columns(app, settings)
    if settings.is_dev:
        mount_dev_sandboxes(app)
    app.state.settings = settings
    return app
