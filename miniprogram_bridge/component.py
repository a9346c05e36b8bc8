"""The WeChat and Alipay mini-program bridge, and its WeChat notification channel."""

from fastapi import APIRouter

from app_api.core.component import Component, Mount, Sandbox
from miniprogram_bridge import channel, models, router


def _wechat() -> APIRouter:
    from miniprogram_bridge.sandbox.dev import wechat_router

    return wechat_router


def _alipay() -> APIRouter:
    from miniprogram_bridge.sandbox.dev import alipay_router

    return alipay_router


component = Component(
    name="miniprogram_bridge",
    routers=(Mount(router.router),),
    sandboxes=(Sandbox("/sandbox/wechat", _wechat), Sandbox("/sandbox/alipay", _alipay)),
    models=(models,),
)
# ``channel`` registers the WeChat subscription-message channel with notify on import.
__all__ = ["channel", "component"]
