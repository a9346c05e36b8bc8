"""Development only: the WeChat and Alipay sandboxes served by the api itself.

The embedded default runs against the sandboxes: with no WeChat API base configured, development
points wechatpy at ``{public_base_url}/sandbox/wechat/``; with no Alipay app configured, it takes
the in-process Alipay sandbox's generated app (PKCS#1 key) and points the SDK at
``{public_base_url}/sandbox/alipay/gateway.do``. A mini-program simulator gets login codes from the
sandboxes' ``/_sandbox/...`` control endpoints.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import SecretStr
from starlette.routing import Route

from app_api.core.settings import get_settings
from app_api.platform.access import public
from miniprogram_bridge.config import get_mp_settings
from miniprogram_bridge.sandbox.alipay import AlipayOAuthSandbox
from miniprogram_bridge.sandbox.wechat import WeChatSandbox

wechat_sandbox = WeChatSandbox()
alipay_sandbox = AlipayOAuthSandbox()


def _configure() -> None:
    s, base = get_mp_settings(), get_settings().public_base_url.rstrip("/")
    wechat_sandbox.add_app(s.wechat_app_id, s.wechat_app_secret.get_secret_value())
    for event, template_id in s.wechat_template_ids.items():
        from app_api.platform import notify

        spec = notify.templates().get(event)
        if spec and spec.wechat_fields:
            wechat_sandbox.add_template(template_id, list(spec.wechat_fields))
    if not get_settings().is_dev:
        return
    if "wechat_api_base" not in s.model_fields_set:
        s.wechat_api_base = f"{base}/sandbox/wechat/"
    if not s.alipay_configured:
        app = alipay_sandbox.add_app()
        s.alipay_app_id = app.app_id
        s.alipay_private_key = SecretStr(app.private_key_pkcs1)
        s.alipay_public_key = alipay_sandbox.alipay_public_key_pem
        s.alipay_server_url = f"{base}/sandbox/alipay/gateway.do"


def _router(app: Any) -> APIRouter:
    r = APIRouter(tags=["development"], dependencies=[Depends(public)], include_in_schema=False)
    for route in app.routes:
        if isinstance(route, Route) and route.methods:
            r.add_api_route(route.path, route.endpoint, methods=sorted(route.methods - {"HEAD"}))
    return r


_configure()
wechat_router = _router(wechat_sandbox.app)
alipay_router = _router(alipay_sandbox.app)
