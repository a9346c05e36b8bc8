"""Every mini-program route declares its response model, and the models keep the keys clients read."""

from __future__ import annotations

from fastapi.routing import APIRoute
from pydantic import BaseModel

from miniprogram_bridge import schemas
from miniprogram_bridge.router import router


def test_every_route_declares_a_response_model() -> None:
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) == 9
    for r in routes:
        assert isinstance(r.response_model, type) and issubclass(r.response_model, BaseModel), r.path


def test_response_keys_in_order() -> None:
    # The JSON keys (and their order) the routes answered when they still built dicts by hand.
    expected: dict[type[BaseModel], list[str]] = {
        schemas.BindingOut: ["platform", "app_id", "bound_at", "last_login_at"],
        schemas.BindingsOut: ["bindings"],
        schemas.UnbindOut: ["unbound"],
        schemas.SubscribeTemplateOut: ["event", "template_id", "category"],
        schemas.SubscribeTemplatesOut: ["templates"],
        schemas.SubscriptionAnswerOut: ["event", "remaining", "refused"],
        schemas.SubscriptionsOut: ["subscriptions"],
    }
    for model, keys in expected.items():
        assert list(model.model_fields) == keys, model.__name__
        assert all(f.is_required() for f in model.model_fields.values()), model.__name__
