"""Which providers this process talks to, built once from settings.

``sandbox`` mode builds the three protocol sandboxes in-process with the installation's keys
(:mod:`payments.sandbox.keys`: made once, shared by every process, so api workers and a separate job
worker sign alike), registers one merchant/app in each, and points the real SDKs at them under
``<sandbox_url>/<provider>`` (by default ``<public_base_url>/sandbox/payments``); the sandboxes'
own URLs (bill downloads) come from the same setting. The api serves them through the payments
component's sandbox (:func:`payments.component.sandbox_app`). ``live`` mode builds each configured
provider. Tests and benchmarks call :func:`configure` with their own providers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from payments.config import SANDBOX_PREFIX as SANDBOX_PREFIX
from payments.config import get_payments_settings
from payments.errors import ProviderNotConfigured
from payments.providers.base import PaymentProvider, ProviderName

if TYPE_CHECKING:
    from payments.sandbox.keys import SandboxKeys

NOTIFY_PATH = "/api/v1/payments/notify"


class PlatformReplayGuard:
    """Replay guard on the platform Redis (shared by api replicas; fakeredis when embedded)."""

    async def seen(self, key: str) -> bool:
        from app_api.core.redis import get_redis

        redis = await get_redis()
        return bool(await redis.exists("payments:replay:" + key))

    async def remember(self, key: str, ttl_s: int) -> None:
        from app_api.core.redis import get_redis

        redis = await get_redis()
        await redis.set("payments:replay:" + key, b"1", ex=ttl_s)


@dataclass
class Sandboxes:
    wechat_v2: Any
    wechat_v3: Any
    alipay: Any

    def asgi_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Mount

        return Starlette(
            routes=[
                Mount("/wechat_v2", app=self.wechat_v2.app),
                Mount("/wechat_v3", app=self.wechat_v3.app),
                Mount("/alipay", app=self.alipay.app),
            ]
        )


_lock = threading.Lock()
_providers: dict[str, PaymentProvider] | None = None
_sandboxes: Sandboxes | None = None
_notify_base: str | None = None


def build_sandbox_providers(
    base_url: str, keys: SandboxKeys | None = None
) -> tuple[dict[str, PaymentProvider], Sandboxes]:
    """Sandboxes reachable at ``base_url`` + /wechat_v2 etc., and providers pointed at them.

    ``keys``: the installation's (every process the same); None, new ones for this call only.
    """
    from payments.providers.alipay import AlipayConfig, AlipayProvider
    from payments.providers.wechat_v2 import WeChatPayV2Provider, WeChatV2Config
    from payments.providers.wechat_v3 import WeChatPayV3Provider, WeChatV3Config
    from payments.sandbox.alipay import AlipaySandbox
    from payments.sandbox.keys import private_key
    from payments.sandbox.wechat_v2 import WeChatPayV2Sandbox
    from payments.sandbox.wechat_v3 import WeChatPayV3Sandbox

    base = base_url.rstrip("/")
    if keys is None:
        v2, v3, ali = WeChatPayV2Sandbox(), WeChatPayV3Sandbox(), AlipaySandbox()
        m2, m3, app = v2.add_merchant(), v3.add_merchant(), ali.add_app()
    else:
        v2 = WeChatPayV2Sandbox()
        v3 = WeChatPayV3Sandbox(
            platform_key=private_key(keys.v3_platform_key), public_key_id=keys.v3_public_key_id
        )
        ali = AlipaySandbox(alipay_key=private_key(keys.alipay_key))
        m2 = v2.add_merchant(appid=keys.v2_appid, mch_id=keys.v2_mch_id, api_key=keys.v2_api_key)
        m3 = v3.add_merchant(
            appid=keys.v3_appid,
            mchid=keys.v3_mchid,
            apiv3_key=keys.v3_apiv3_key,
            cert_serial_no=keys.v3_cert_serial_no,
            private_key=private_key(keys.v3_merchant_key),
        )
        app = ali.add_app(
            app_id=keys.alipay_app_id, pid=keys.alipay_pid, key=private_key(keys.alipay_app_key)
        )
    # The URLs the sandboxes hand out (bill downloads) point where they are served, prefix included.
    v3.base_url, ali.base_url = f"{base}/wechat_v3", f"{base}/alipay"
    providers: dict[str, PaymentProvider] = {
        ProviderName.WECHAT_V2: WeChatPayV2Provider(
            WeChatV2Config(
                appid=m2.appid, mch_id=m2.mch_id, api_key=m2.api_key, base_url=f"{base}/wechat_v2/"
            )
        ),
        ProviderName.WECHAT_V3: WeChatPayV3Provider(
            WeChatV3Config(
                appid=m3.appid,
                mchid=m3.mchid,
                private_key=m3.private_key_pem,
                cert_serial_no=m3.cert_serial_no,
                apiv3_key=m3.apiv3_key,
                public_key=v3.platform_public_key_pem,
                public_key_id=v3.public_key_id,
                base_url=f"{base}/wechat_v3",
            ),
            replay_guard=PlatformReplayGuard(),
        ),
        ProviderName.ALIPAY: AlipayProvider(
            AlipayConfig(
                app_id=app.app_id,
                app_private_key=app.private_key_pkcs1,
                alipay_public_key=ali.alipay_public_key_pem,
                seller_id=app.pid,
                server_url=f"{base}/alipay/gateway.do",
            )
        ),
    }
    return providers, Sandboxes(wechat_v2=v2, wechat_v3=v3, alipay=ali)


def _build_live() -> dict[str, PaymentProvider]:
    settings = get_payments_settings()
    providers: dict[str, PaymentProvider] = {}
    if settings.wechat_v2:
        from payments.providers.wechat_v2 import WeChatPayV2Provider, WeChatV2Config

        b2 = settings.wechat_v2
        providers[ProviderName.WECHAT_V2] = WeChatPayV2Provider(
            WeChatV2Config(
                appid=b2.appid,
                mch_id=b2.mch_id,
                api_key=b2.api_key.get_secret_value(),
                sign_type=b2.sign_type,
                base_url=b2.base_url,
                mch_cert=b2.mch_cert_path,
                mch_key=b2.mch_key_path,
            )
        )
    if settings.wechat_v3:
        from payments.providers.wechat_v3 import WeChatPayV3Provider, WeChatV3Config

        b3 = settings.wechat_v3
        providers[ProviderName.WECHAT_V3] = WeChatPayV3Provider(
            WeChatV3Config(
                appid=b3.appid,
                mchid=b3.mchid,
                private_key=b3.private_key.get_secret_value(),
                cert_serial_no=b3.cert_serial_no,
                apiv3_key=b3.apiv3_key.get_secret_value(),
                public_key=b3.public_key,
                public_key_id=b3.public_key_id,
                base_url=b3.base_url,
                max_skew_s=settings.notification_max_skew_s,
            ),
            replay_guard=PlatformReplayGuard(),
        )
    if settings.alipay:
        from payments.providers.alipay import AlipayConfig, AlipayProvider

        ba = settings.alipay
        providers[ProviderName.ALIPAY] = AlipayProvider(
            AlipayConfig(
                app_id=ba.app_id,
                app_private_key=ba.app_private_key.get_secret_value(),
                alipay_public_key=ba.alipay_public_key,
                seller_id=ba.seller_id,
                server_url=ba.server_url,
            )
        )
    return providers


def _ensure() -> dict[str, PaymentProvider]:
    global _providers, _sandboxes
    with _lock:
        if _providers is None:
            settings = get_payments_settings()
            if settings.mode == "sandbox":
                from payments.sandbox.keys import load_or_create

                keys = load_or_create(settings.sandbox_keys_file)
                _providers, _sandboxes = build_sandbox_providers(settings.sandbox_base, keys)
            else:
                _providers = _build_live()
        return _providers


def get_providers() -> dict[str, PaymentProvider]:
    return _ensure()


def get_provider(name: str) -> PaymentProvider:
    provider = _ensure().get(name)
    if provider is None:
        raise ProviderNotConfigured(f"未配置支付渠道 {name}", provider=name)
    return provider


def sandboxes() -> Sandboxes | None:
    _ensure()
    return _sandboxes


_served: Any = None  # the SharedSandboxes serving ``_sandboxes`` in this process


def sandbox_asgi() -> Any:
    """The ASGI app the api mounts at ``/sandbox/payments`` (None outside sandbox mode): the
    sandboxes themselves in the process that owns them, a forwarder to it in the other workers
    (:mod:`payments.sandbox.shared`)."""
    global _served
    boxes = sandboxes()
    if boxes is None:
        return None
    from payments.sandbox.shared import SharedSandboxes

    with _lock:
        if _served is None or _served.boxes is not boxes:
            if _served is not None:
                _served.close()
            settings = get_payments_settings()
            _served = SharedSandboxes(
                boxes.asgi_app(),
                state_dir=settings.sandbox_keys_file.parent,
                base_url=settings.sandbox_base,
            )
            _served.boxes = boxes
        return _served


def notify_url(provider: str) -> str:
    base = _notify_base or get_payments_settings().notify_base
    return f"{base}{NOTIFY_PATH}/{provider}"


def configure(
    providers: dict[str, PaymentProvider],
    *,
    notify_base: str | None = None,
    sandbox_set: Sandboxes | None = None,
) -> None:
    """Replace the providers (tests, benchmarks, a deployment that builds its own)."""
    global _providers, _sandboxes, _notify_base
    with _lock:
        _providers = dict(providers)
        _sandboxes = sandbox_set
        _notify_base = notify_base.rstrip("/") if notify_base else None
