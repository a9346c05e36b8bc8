"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute, APIRouter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from app_api.core.component import API_PREFIX
from app_api.core.errors import (
    PROBLEM_JSON,
    AppError,
    BadRequest,
    DependencyUnavailable,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from app_api.core.input_guard import InputGuardMiddleware
from app_api.core.logging import configure_logging, request_id_var
from app_api.core.middleware import EdgeMiddleware, with_security_headers
from app_api.core.outage import OUTAGE_EXCEPTIONS, unavailable_dependency
from app_api.core.settings import Settings, StartupRefused, get_settings
from app_api.core.shedding import admission_for
from app_api.core.validation_zh import chinese_errors
from app_api.platform.access_walk import access_kinds, is_open
from app_api.platform.accounts.errors import ConsoleLoginRequired
from app_api.platform.home.loader import discover
from app_api.platform.home.router import column_gate
from app_api.platform.home.service import Registry
from app_api.wiring.components import components
from app_api.wiring.route_index import install_route_index

log = logging.getLogger(__name__)
API = API_PREFIX
# Seconds a client waits before retrying during a PostgreSQL or Redis outage.
RETRY_AFTER_S = 5


def _problem(err: AppError, request: Request) -> JSONResponse:
    return JSONResponse(
        err.to_problem(instance=request.url.path, request_id=request_id_var.get()),
        status_code=err.status,
        media_type=PROBLEM_JSON,
        headers={"retry-after": str(err.extra["retry_after"])} if "retry_after" in err.extra else None,
    )


def _unreadable_body() -> AppError:
    return BadRequest("请求内容无法解析，请检查格式与编码（UTF-8）", code_detail="body_unreadable")


_HTTP_PROBLEMS: dict[int, Callable[[], AppError]] = {
    400: _unreadable_body,
    401: Unauthorized,
    403: Forbidden,
    413: PayloadTooLarge,
    429: TooManyRequests,
}


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
            from app_api.platform.console import refresh_url

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
        fields = chinese_errors(errs, request.scope.get("route"))
        return _problem(ValidationFailed("；".join(f["msg"] for f in fields[:3]), errors=fields), request)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _problem(NotFound("请求的地址不存在"), request)
        if exc.status_code == 405:
            return _problem(MethodNotAllowed(), request)
        # Framework errors carry English details ("There was an error parsing the body", "Invalid
        # multipart data."): residents get the Chinese problem of the status, never that text.
        known = _HTTP_PROBLEMS.get(exc.status_code)
        if known is not None:
            return _problem(known(), request)
        err = AppError("请求无法处理")
        err.status = exc.status_code  # type: ignore[misc]
        return _problem(err, request)

    async def on_outage(request: Request, exc: Exception) -> JSONResponse:
        # Handled here, inside the app, so the connection stays usable (the catch-all handler below
        # runs in Starlette's outermost middleware, which re-raises after answering).
        dependency = unavailable_dependency(exc)
        if dependency is None:
            raise exc
        log.warning("%s unavailable on %s %s: %r", dependency, request.method, request.url.path, exc)
        return _problem(DependencyUnavailable(retry_after=RETRY_AFTER_S), request)

    for outage in OUTAGE_EXCEPTIONS:
        app.add_exception_handler(outage, on_outage)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        dependency = unavailable_dependency(exc)
        if dependency is not None:
            log.warning("%s unavailable on %s %s: %r", dependency, request.method, request.url.path, exc)
            problem: AppError = DependencyUnavailable(retry_after=RETRY_AFTER_S)
        else:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            problem = InternalError()
        response = _problem(problem, request)
        # Sent by Starlette's outermost error middleware, past every other middleware.
        settings = getattr(request.app.state, "settings", None) or get_settings()
        hsts = settings.public_base_url.startswith("https://")
        response.raw_headers[:] = with_security_headers(
            response.raw_headers, path=request.url.path, hsts=hsts
        )
        return response


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


class LazySandbox:
    """An ASGI sandbox built on its first request (``Sandbox.lazy``, ``column.dev_sandbox``): an
    idle worker does not import it (issue 19: the payments sandboxes, their providers and their
    shared server were 5 MB and a thread in every development worker). ``build`` runs once, in the
    event loop (it is synchronous); None answers 404 as an unmounted path does."""

    def __init__(self, build: Callable[[], ASGIApp | None]) -> None:
        self._build: Callable[[], ASGIApp | None] | None = build
        self._app: ASGIApp | None = None

    def built(self) -> ASGIApp | None:
        if self._build is not None:
            self._app = self._build()
            self._build = None
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.built()
        if app is None:
            raise StarletteHTTPException(status_code=404)
        await app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        # The sandbox's own attributes (tests reach its state through the mount): built now.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.built(), name)


def mount_dev_sandboxes(app: FastAPI) -> None:
    """Development: serve the loopback sandboxes of the external systems the default settings point at.

    Components declare theirs (``Component.sandboxes``); a column offers its own as
    ``column.dev_sandbox`` (a factory returning an ASGI app), mounted at ``/sandbox/<slug>`` and
    built on its first request.
    """
    mounted = {getattr(r, "path", None) for r in app.routes}
    for component in components():
        for box in component.sandboxes:
            if box.prefix in mounted:
                continue
            if box.lazy:
                app.mount(box.prefix, LazySandbox(box.build))
                continue
            built = box.build()
            if built is None:
                continue
            if isinstance(built, APIRouter):
                app.include_router(built, prefix=box.prefix)
            else:
                app.mount(box.prefix, built)
    for column in app.state.columns.columns.values():
        if column.dev_sandbox is not None:
            app.mount(f"/sandbox/{column.slug}", LazySandbox(column.dev_sandbox))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    from app_api.core.db import dispose_engine
    from app_api.core.heap import freeze_startup_heap, unfreeze_heap
    from app_api.core.http import close_http
    from app_api.core.jobs import broker
    from app_api.core.redis import close_redis

    background: list[asyncio.Task[Any]] = []
    # In the embedded default the worker lives in the api process (an in-process broker) and the
    # jobs component's start-up hook runs the schedules and the relay here too.
    if not broker.is_worker_process:
        await broker.startup()
    from app_api.core.cache import listen_forever

    for component in components():
        if component.startup is not None:
            await component.startup()

    background.append(asyncio.create_task(listen_forever()))
    freeze_startup_heap()
    try:
        yield
    finally:
        unfreeze_heap()
        for t in background:
            t.cancel()
        for component in reversed(components()):
            if component.shutdown is not None:
                await component.shutdown()
        from app_api.core.jobs.outbox import flush_marks

        await flush_marks()
        with contextlib.suppress(Exception):
            await broker.shutdown()
        await close_http()
        await close_redis()
        await dispose_engine()


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """One edge layer, outermost (admission, request id, size limits, security headers, metrics;
    CORS inside it when origins are configured), then the control-character check of every text
    input."""
    app.add_middleware(InputGuardMiddleware)
    cors: dict[str, Any] | None = None
    if settings.cors_allowed_origins:
        cors = {
            "allow_origins": settings.cors_allowed_origins,
            "allow_methods": ["GET", "POST", "PUT", "PATCH", "DELETE"],
            "allow_headers": ["authorization", "content-type", "x-request-id", "x-step-up-token"],
            "expose_headers": ["x-request-id", "retry-after"],
            "allow_credentials": False,
            "max_age": 600,
        }
    app.add_middleware(
        EdgeMiddleware,
        max_body=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
        hsts=settings.public_base_url.startswith("https://"),
        admission=admission_for(settings),
        cors=cors,
    )


def telemetry_config() -> dict[str, Any] | None:
    """FastAPI's own OpenTelemetry: left as FastAPI sets it up when the process asks for
    OpenTelemetry (an ``OTEL_*`` variable, ``FASTAPI_OTEL_AUTO_CONFIGURE``, or a provider already
    set), else switched off. Off, FastAPI no longer looks the three global providers up on every
    request to find none configured (6 % of the CPU of ``GET /api/v1/home``); the api configures
    none itself and exports its metrics with Prometheus."""
    if any(name.startswith("OTEL_") or name == "FASTAPI_OTEL_AUTO_CONFIGURE" for name in os.environ):
        return None
    from fastapi.telemetry._api import _unconfigured
    from opentelemetry import _logs, metrics, trace

    providers = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    if not all(_unconfigured(p) for p in providers):
        return None
    return {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The api. Refuses (``StartupRefused``) settings unsafe to serve with outside development."""
    settings = settings or get_settings()
    problems = settings.serving_problems()
    if problems:
        raise StartupRefused("the api will not start: " + "; ".join(problems))
    configure_logging(json=settings.log_json)
    docs = settings.serve_docs
    app = FastAPI(
        title=f"我家{settings.city_name} Wojia API",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        telemetry=telemetry_config(),  # type: ignore[arg-type]
    )
    install_error_handlers(app)
    install_middleware(app, settings)
    for component in components():
        for mount in component.routers:
            app.include_router(mount.router, prefix=mount.prefix)
    app.state.columns = mount_columns(app, settings)
    if settings.is_dev:
        mount_dev_sandboxes(app)
    install_route_index(app)
    app.state.settings = settings
    return app
