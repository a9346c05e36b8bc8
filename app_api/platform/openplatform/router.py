"""The open platform's HTTP API: the OIDC endpoints, the resident's grants, the admin's columns."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import SessionDep
from app_api.core.errors import AppError
from app_api.core.settings import get_settings
from app_api.core.templates import LazyEnvironment
from app_api.platform.access import CurrentAccount, public, require_roles
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.openplatform import keys, messages, oidc, service
from app_api.platform.openplatform.errors import ConsentExpired, TicketInvalid
from app_api.platform.openplatform.models import ExternalColumn
from app_api.platform.openplatform.schemas import (
    SCOPE_NAMES,
    ColumnCreate,
    ColumnCreated,
    ColumnList,
    ColumnOut,
    GrantList,
    GrantOut,
    KeyRotated,
    MessageIn,
    MessageOut,
    TemplateDecision,
    TemplateIn,
    TemplateList,
    TemplateOut,
    TicketOut,
)

if TYPE_CHECKING:
    from jinja2 import Environment

router = APIRouter(tags=["openplatform"])
well_known = APIRouter(tags=["openplatform"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]


def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("app_api.platform.openplatform", "templates"),
        autoescape=select_autoescape(default=True),
    )


_templates = LazyEnvironment(_environment)
AUTHORIZE_PATH = "/api/v1/oidc/authorize"
_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def _origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, or None (also for anything that could break out of
    a policy's source list)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not _HOST_PORT.fullmatch(parts.netloc):
        return None
    return f"{parts.scheme}://{parts.netloc}"


_HOST_PORT = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _csp(redirect_uri: str | None, icon: str | None) -> str:
    """The consent page's own policy: the API's page policy, plus the column's redirect origin as a
    form target (CSP3 ``form-action`` governs the redirect that follows the form: without it Chromium
    aborts the way back to the column) and the icon's origin as an image source."""
    form = " ".join(filter(None, ["'self'", _origin(redirect_uri)]))
    img = _origin(icon)
    return "; ".join(
        [
            "default-src 'none'",
            "style-src 'unsafe-inline'",
            f"form-action {form}",
            *([f"img-src {img}"] if img else []),
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _page(status_code: int = 200, *, redirect_uri: str | None = None, **ctx: Any) -> HTMLResponse:
    html = _templates.get_template("consent.html").render(city=get_settings().city_name, **ctx)
    # Framing the consent page would let another site trick a resident into clicking "同意".
    headers = {
        **_NO_STORE,
        "x-frame-options": "DENY",
        "content-security-policy": _csp(redirect_uri, ctx.get("icon")),
    }
    return HTMLResponse(html, status_code=status_code, headers=headers)


def _redirect(uri: str, params: dict[str, str | None]) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(uri + ("&" if "?" in uri else "?") + query, status_code=302, headers=_NO_STORE)


def _column_out(c: ExternalColumn) -> dict[str, Any]:
    return c.model_dump(exclude={"client_secret_hash", "created_by"})


# --- discovery and keys ------------------------------------------------------------------------------


@well_known.get("/.well-known/openid-configuration", dependencies=[Depends(public)])
async def openid_configuration() -> dict[str, Any]:
    """The OpenID Provider metadata (OIDC Discovery 1.0)."""
    return oidc.discovery()


@router.get("/oidc/jwks", dependencies=[Depends(public)])
async def jwks(session: SessionDep) -> dict[str, Any]:
    """The public keys that sign ID and access tokens, the retired ones kept until their tokens expired."""
    await keys.signing_key(session)
    return {"keys": await keys.published(session)}


# --- sign-in ------------------------------------------------------------------------------------------


@router.post("/oidc/tickets")
async def new_ticket(principal: CurrentAccount, session: SessionDep) -> TicketOut:
    """A one-time ticket (60 s) the app appends to the authorize URL it opens in its webview."""
    return TicketOut(
        ticket=await oidc.new_ticket(session, principal.id), expires_in=int(oidc.TICKET_TTL.total_seconds())
    )


# What each level asks of the resident, on the step-up page.
_LEVEL_NAMES = {
    1: "手机号码验证",
    2: "实名认证（核验姓名和身份证号码）",
    3: "人脸识别认证（或携带身份证到代办点现场核验）",
}
STEP_UP_LINK = "wojia://identity/step-up"


@router.get("/oidc/authorize", response_class=HTMLResponse, dependencies=[Depends(public)])
async def authorize(
    request: Request,
    session: SessionDep,
    ticket: Annotated[str, Query(title="登录凭据")] = "",
    resume: Annotated[str, Query(title="继续授权", max_length=4000)] = "",
) -> Any:
    """The consent screen for a column's authorization request (the resident comes with a ticket).

    A resident below the level the column needs (its registered level, or ``acr_values`` / an
    ``acr`` claim request) gets the step-up page instead: the app raises the level, then opens the
    page's ``continue`` address with a new ticket and the request goes on where it stopped."""
    if resume:
        try:
            req, paused_for = oidc.read_resume_token(resume)
        except ConsentExpired as e:
            return _page(400, error=e.title)
        column = await session.get(ExternalColumn, req.column_id)
        if column is None or not column.enabled:
            return _page(400, error="该栏目已停用。")
    else:
        params = {k: v for k, v in request.query_params.items() if k != "ticket"}
        try:
            column, req = await oidc.check_request(session, params)
        except oidc.PageError as e:
            return _page(400, error=e.message)
        except oidc.RedirectError as e:
            return _redirect(
                params["redirect_uri"], {**dict(e.error.get_body()), "state": params.get("state")}
            )
        paused_for = None
    try:
        account_id = await oidc.spend_ticket(session, ticket)
    except TicketInvalid as e:
        return _page(401, error=e.title)
    account = await session.get(Account, account_id)
    if account is None or not account.is_active:
        return _page(403, error="账号不可用。")
    if paused_for is not None and paused_for != account_id:
        # Another account's ticket cannot carry on a request paused for someone else.
        await oidc.refuse(session, "openplatform.authorize_refused", column, reason="resume_other_account")
        return _page(403, error="该授权请求属于另一个账号，请返回应用重新打开。")
    needed = oidc.required_level(column, req)
    if account.identity_level < needed:
        await oidc.refuse(
            session,
            "openplatform.step_up_required",
            column,
            level_required=needed,
            level_current=account.identity_level,
            essential=req.acr_essential,
        )
        cont = (
            str(request.base_url).rstrip("/")
            + AUTHORIZE_PATH
            + "?"
            + urlencode({"resume": oidc.resume_token(req, account_id)})
        )
        return _page(
            redirect_uri=req.redirect_uri,
            column_name=column.name,
            icon=column.icon,
            operator=column.operator_contact,
            step_up=True,
            level_required=needed,
            level_current=account.identity_level,
            level_name=_LEVEL_NAMES.get(needed, ""),
            step_up_link=STEP_UP_LINK + "?" + urlencode({"level": needed, "continue": cont}),
            continue_url=cont,
            consent=oidc.consent_token(req, account_id, oidc.ticket_hash(ticket), step_up=True),
            action=AUTHORIZE_PATH,
        )
    return _page(
        redirect_uri=req.redirect_uri,
        column_name=column.name,
        icon=column.icon,
        operator=column.operator_contact,
        scope_names=[SCOPE_NAMES[s] for s in req.scopes],
        consent=oidc.consent_token(req, account_id, oidc.ticket_hash(ticket)),
        action=AUTHORIZE_PATH,
    )


@router.post("/oidc/authorize", dependencies=[Depends(public)])
async def decide(
    session: SessionDep,
    consent: Annotated[str, Form(title="授权请求")],
    decision: Annotated[str, Form(title="选择")],
) -> Any:
    """The resident's answer on the consent screen: back to the column with a code, or access_denied.

    On the step-up page the only answer is to decline: the column gets ``access_denied``, or
    ``unmet_authentication_requirements`` when it asked for the level as an essential claim."""
    try:
        req, account_id, ticket, step_up = oidc.read_consent_token(consent)
        await oidc.spend_decision(session, ticket, account_id)
    except ConsentExpired as e:
        return _page(400, error=e.title)
    column = await session.get(ExternalColumn, req.column_id)
    if column is None or not column.enabled:
        return _page(400, error="该栏目已停用。")
    if step_up:
        await oidc.refuse(
            session, "openplatform.step_up_declined", column, level_required=oidc.required_level(column, req)
        )
        error = oidc.refusal_for_level(req, declined=True)
        return _redirect(req.redirect_uri, {**dict(error.get_body()), "state": req.state})
    if decision != "allow":
        return _redirect(req.redirect_uri, {"error": "access_denied", "state": req.state})
    account = await session.get(Account, account_id)
    needed = oidc.required_level(column, req)
    if account is None or not account.is_active or account.identity_level < needed:
        # The level is checked again when the code is issued: a code is never issued below it.
        await oidc.refuse(
            session,
            "openplatform.authorize_refused",
            column,
            reason="level_not_met",
            level_required=needed,
            level_current=account.identity_level if account else None,
        )
        error = oidc.refusal_for_level(req, declined=False)
        return _redirect(req.redirect_uri, {**dict(error.get_body()), "state": req.state})
    code = await oidc.issue_code(session, req, account_id)
    return _redirect(req.redirect_uri, {"code": code, "state": req.state})


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return cid, secret
    return form.get("client_id", ""), form.get("client_secret", "")


def _oauth_error(error: Any) -> JSONResponse:
    # RFC 6749 5.2 bodies, not problem+json: OAuth client libraries read ``error``.
    headers = dict(_NO_STORE)
    if error.status_code == 401:
        headers["www-authenticate"] = 'Basic realm="oidc"'
    return JSONResponse(dict(error.get_body()), status_code=error.status_code, headers=headers)


async def _form(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


@router.post("/oidc/token", dependencies=[Depends(public)])
async def token(request: Request, session: SessionDep) -> JSONResponse:
    """Exchange an authorization code (client authentication and the PKCE verifier required)."""
    form = await _form(request)
    try:
        column = await oidc.authenticate_client(session, *_client_credentials(request, form))
        if form.get("grant_type") != "authorization_code":
            from authlib.oauth2.rfc6749.errors import UnsupportedGrantTypeError

            raise oidc.TokenError(UnsupportedGrantTypeError())
        body = await oidc.exchange_code(
            session,
            column,
            code=form.get("code", ""),
            redirect_uri=form.get("redirect_uri", ""),
            verifier=form.get("code_verifier", ""),
        )
    except oidc.TokenError as e:
        # Returned, not raised: the refusal's audit entry and revocations are committed.
        return _oauth_error(e.error)
    return JSONResponse(body, headers=_NO_STORE)


def _bearer_error(e: oidc.BearerError) -> JSONResponse:
    return JSONResponse(
        {"error": e.error, "error_description": e.description},
        status_code=e.status,
        headers={"www-authenticate": f'Bearer error="{e.error}", error_description="{e.description}"'},
    )


@router.api_route("/oidc/userinfo", methods=["GET", "POST"], dependencies=[Depends(public)])
async def userinfo(request: Request, session: SessionDep) -> JSONResponse:
    """The claims of the scopes the resident granted, for the bearer access token."""
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return _bearer_error(oidc.BearerError("invalid_request", "bearer token required"))
    try:
        use = await oidc.verify_access(session, auth[7:].strip())
        return JSONResponse(await oidc.userinfo(session, use), headers=_NO_STORE)
    except oidc.BearerError as e:
        return _bearer_error(e)


@router.post("/oidc/introspect", dependencies=[Depends(public)])
async def introspect(request: Request, session: SessionDep) -> JSONResponse:
    """RFC 7662 for a column's server: ``active`` only for a live token issued to that column."""
    form = await _form(request)
    try:
        column = await oidc.authenticate_client(session, *_client_credentials(request, form))
    except oidc.TokenError as e:
        return _oauth_error(e.error)
    try:
        use = await oidc.verify_access(session, form.get("token", ""), audience=column.client_id)
    except oidc.BearerError as e:
        return JSONResponse({"active": False, "error": e.error, "error_description": e.description})
    c = use.claims
    return JSONResponse(
        {
            "active": True,
            "scope": " ".join(use.token.scopes),
            "client_id": column.client_id,
            "sub": c["sub"],
            "aud": c["aud"],
            "exp": c["exp"],
            "iat": c["iat"],
            "iss": c["iss"],
            "token_type": "Bearer",
        }
    )


# --- the resident's authorised columns -------------------------------------------------------------


@router.get("/me/external-columns")
async def my_grants(principal: CurrentAccount, session: SessionDep) -> GrantList:
    """The third-party columns this resident has authorised, with what each may read."""
    return GrantList(
        grants=[
            GrantOut(
                column_id=c.id,
                column_name=c.name,
                icon=c.icon,
                scopes=g.scopes,
                scope_names=[SCOPE_NAMES[s] for s in g.scopes if s in SCOPE_NAMES],
                granted_at=g.granted_at,
            )
            for g, c in await service.grants_of(session, principal.id)
        ]
    )


@router.delete("/me/external-columns/{column_id}", status_code=204)
async def revoke_grant(column_id: str, principal: CurrentAccount, session: SessionDep) -> None:
    """Withdraw a column's authorisation; its tokens for this resident stop working at once."""
    await service.revoke_grant(session, account_id=principal.id, column_id=column_id)


# --- administration ---------------------------------------------------------------------------------


@router.post("/admin/external-columns", status_code=201)
async def register_column(data: ColumnCreate, admin: Admin, session: SessionDep) -> ColumnCreated:
    """Register a third-party column; the client secret is in this answer only."""
    column, secret = await service.register(session, data=data, actor_id=admin.id)
    return ColumnCreated(**_column_out(column), client_secret=secret)


@router.get("/admin/external-columns")
async def list_columns(_: Admin, session: SessionDep) -> ColumnList:
    """All third-party columns, in home-screen order."""
    return ColumnList(columns=[ColumnOut(**_column_out(c)) for c in await service.list_all(session)])


async def _toggle(session: AsyncSession, column_id: str, enabled: bool, admin: Principal) -> ColumnOut:
    return ColumnOut(
        **_column_out(
            await service.set_enabled(session, column_id=column_id, enabled=enabled, actor_id=admin.id)
        )
    )


@router.post("/admin/external-columns/{column_id}/enable")
async def enable_column(column_id: str, admin: Admin, session: SessionDep) -> ColumnOut:
    """Enable a column again (residents must sign in anew: old tokens stay revoked)."""
    return await _toggle(session, column_id, True, admin)


@router.post("/admin/external-columns/{column_id}/disable")
async def disable_column(column_id: str, admin: Admin, session: SessionDep) -> ColumnOut:
    """Disable a column: sign-in stops and every token it holds is refused from its next use."""
    return await _toggle(session, column_id, False, admin)


@router.post("/admin/external-columns/{column_id}/client-secret")
async def rotate_column_secret(column_id: str, admin: Admin, session: SessionDep) -> ColumnCreated:
    """Issue the column a new client secret (in this answer only; stored hashed). The old secret is
    refused from now on; tokens already issued stay valid (disable the column to revoke them)."""
    column, secret = await service.rotate_client_secret(session, column_id=column_id, actor_id=admin.id)
    return ColumnCreated(**_column_out(column), client_secret=secret)


@router.post("/admin/oidc/keys/rotate")
async def rotate_keys(admin: Admin, session: SessionDep) -> KeyRotated:
    """Sign with a new key from now on; the old one stays in JWKS until its tokens expired."""
    return KeyRotated(kid=await keys.rotate(session, actor_id=admin.id))


# --- a column's server: message templates and messages (HTTP Basic with its client credentials) ------


class ClientUnauthorized(AppError):
    code = "openplatform.client_unauthorized"
    title = "栏目身份验证失败"
    status = 401


async def _column_server(request: Request, session: AsyncSession) -> ExternalColumn:
    """The enabled column whose client credentials the request carries (the refusal audited)."""
    try:
        return await oidc.authenticate_client(session, *_client_credentials(request, {}))
    except oidc.TokenError as e:
        await session.commit()  # the refusal's audit entry stays
        raise ClientUnauthorized(str(e.error.description or "")) from None


def _template_out(t: Any) -> TemplateOut:
    return TemplateOut.model_validate(t, from_attributes=True)


@router.post("/openplatform/templates", status_code=201, dependencies=[Depends(public)])
async def propose_template(body: TemplateIn, request: Request, session: SessionDep) -> TemplateOut:
    """A column proposes a message template; an admin approves it before it can be sent."""
    column = await _column_server(request, session)
    return _template_out(await messages.propose(session, column, key=body.key, text=body.text))


@router.get("/openplatform/templates", dependencies=[Depends(public)])
async def column_templates(request: Request, session: SessionDep) -> TemplateList:
    """The column's own templates and their review status."""
    column = await _column_server(request, session)
    return TemplateList(
        templates=[_template_out(t) for t in await messages.templates_of(session, column_id=column.id)]
    )


@router.post("/openplatform/messages", status_code=201, dependencies=[Depends(public)])
async def send_message(body: MessageIn, request: Request, session: SessionDep) -> JSONResponse:
    """Send an approved template to a resident who authorised the column: 201 when sent, 200 with the
    same message when this idempotency key was sent already. The resident's preferences apply."""
    column = await _column_server(request, session)
    try:
        message, now = await messages.send(
            session,
            column,
            subject=body.sub,
            template_key=body.template,
            params=body.params,
            idempotency_key=body.idempotency_key,
        )
    except AppError:
        await session.commit()  # the refusal's audit entry stays; nothing else was written
        raise
    out = MessageOut(id=message.id, template=body.template, created_at=message.created_at, sent_now=now)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if now else 200)


@router.get("/admin/external-columns/{column_id}/templates")
async def admin_templates(column_id: str, _: Admin, session: SessionDep) -> TemplateList:
    """A column's message templates, pending ones first to review."""
    await service.get(session, column_id)
    rows = await messages.templates_of(session, column_id=column_id)
    rows.sort(key=lambda t: (t.status != "pending", t.proposed_at))
    return TemplateList(templates=[_template_out(t) for t in rows])


@router.post("/admin/external-column-templates/{template_id}/approve")
async def approve_template(
    template_id: str, body: TemplateDecision, admin: Admin, session: SessionDep
) -> TemplateOut:
    """Approve a column's message template (audited)."""
    t = await messages.decide(
        session, template_id=template_id, approve=True, admin_id=admin.id, note=body.note
    )
    return _template_out(t)


@router.post("/admin/external-column-templates/{template_id}/reject")
async def reject_template(
    template_id: str, body: TemplateDecision, admin: Admin, session: SessionDep
) -> TemplateOut:
    """Reject a column's message template (audited); it can no longer be sent."""
    t = await messages.decide(
        session, template_id=template_id, approve=False, admin_id=admin.id, note=body.note
    )
    return _template_out(t)
