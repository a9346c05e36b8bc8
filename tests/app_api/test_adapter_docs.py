"""The five house protocols are written down in ``docs/adapters/`` (OpenAPI 3.1), and the documents
cannot drift from the code: each is a valid OpenAPI 3.1 document, names itself the project's own
proposal, documents exactly the operations its HTTP adapter calls (read from the adapter's source,
not copied here), declares the signing headers of ``app_api.core.signing`` on each, and each
documented operation is served by the protocol's sandbox, the reference implementation."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import schemathesis.openapi
import yaml
from starlette.routing import BaseRoute, Route

DOCS = Path(__file__).resolve().parents[2] / "docs" / "adapters"
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
SIGNING_HEADERS = {"x-app-id", "x-timestamp", "x-nonce", "x-signature"}
Operation = tuple[str, str]  # (METHOD, path with its parameters written "{}")


def _datahub_routes() -> list[BaseRoute]:
    from app_api.platform.datahub.sandbox.exchange import router

    return list(router.routes)


def _biller_routes() -> list[BaseRoute]:
    from columns.utilities.sandbox.biller import BillerSandbox

    return list(BillerSandbox("doc", "secret").app.routes)


def _fund_routes() -> list[BaseRoute]:
    from columns.provident_fund.sandbox.center import FundCenterSandbox

    return list(FundCenterSandbox("secret").app.routes)


def _postal_routes() -> list[BaseRoute]:
    from columns.gov_services.sandbox.postal import router

    return list(router.routes)


def _realperson_routes() -> list[BaseRoute]:
    from identity.face.factory import local_verifier
    from identity.sandbox.realperson import RealPersonSandbox, population_registry

    sandbox = RealPersonSandbox(
        app_id="doc", secret="secret", registry=population_registry, verifier=local_verifier
    )
    return list(sandbox.router().routes)


# document -> (the module of its HTTP adapter, the routes of its sandbox)
PROTOCOLS: dict[str, tuple[str, Callable[[], list[BaseRoute]]]] = {
    "datahub.yaml": ("app_api.platform.datahub.service", _datahub_routes),
    "utilities.yaml": ("columns.utilities.adapters", _biller_routes),
    "provident_fund.yaml": ("columns.provident_fund.center", _fund_routes),
    "postal.yaml": ("columns.gov_services.postal", _postal_routes),
    "realperson.yaml": ("identity.face.remote", _realperson_routes),
}


def _template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DOCS / name).read_text(encoding="utf-8"))
    return doc


def _documented(doc: dict[str, Any]) -> set[Operation]:
    return {
        (method.upper(), _template(path))
        for path, item in doc["paths"].items()
        for method in item
        if method.upper() in METHODS
    }


def _path_of(node: ast.expr, module: Any) -> str | None:
    """A protocol path written in the adapter: a literal, an f-string, or a module constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    elif isinstance(node, ast.Name) and isinstance(getattr(module, node.id, None), str):
        text = getattr(module, node.id)
    else:
        return None
    return text if re.fullmatch(r"/v\d+/[^\s]*", text) else None


def _constant_method(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.upper() in METHODS:
        return node.value.upper()
    return None


def adapter_calls(module_name: str) -> set[Operation]:
    """The operations the adapter module calls, read from its source.

    A call's path is a ``/v1/...`` argument (literal, f-string or module constant, positional or
    ``path=``); its method is the HTTP method written just before it or as ``method=``, else the
    one method the module signs its requests with (``signed_headers(method="POST", ...)``)."""
    module = importlib.import_module(module_name)
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    signed_methods = {
        m
        for c in calls
        for k in c.keywords
        if k.arg == "method" and (m := _constant_method(k.value)) is not None
    }
    found: set[tuple[str | None, str]] = set()
    for call in calls:
        keywords = {k.arg: k.value for k in call.keywords}
        candidates: Iterable[tuple[ast.expr | None, ast.expr]] = [
            (call.args[i - 1] if i else None, arg) for i, arg in enumerate(call.args)
        ]
        if "path" in keywords:
            candidates = [*candidates, (keywords.get("method"), keywords["path"])]
        for before, arg in candidates:
            path = _path_of(arg, module)
            if path is not None:
                found.add((_constant_method(before) or _constant_method(keywords.get("method")), path))
    ops: set[Operation] = set()
    for method, path in found:
        if method is None:
            assert len(signed_methods) == 1, f"{module_name}: cannot tell the method of {path}"
            method = next(iter(signed_methods))
        ops.add((method, _template(path)))
    return ops


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_document_is_valid_openapi_31_and_says_what_it_is(name: str) -> None:
    doc = _load(name)
    assert doc["openapi"].startswith("3.1")
    # Validated against the OpenAPI 3.1 meta-schema (schemathesis, through jsonschema-rs).
    schemathesis.openapi.from_dict(doc).validate()
    assert "Wojia's own proposal" in doc["info"]["description"]
    assert "app_api/core/signing.py" in doc["info"]["description"]


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_document_lists_exactly_what_the_adapter_calls(name: str) -> None:
    module_name, _ = PROTOCOLS[name]
    calls = adapter_calls(module_name)
    assert calls, f"no protocol call found in {module_name}"
    documented = _documented(_load(name))
    assert calls - documented == set(), f"{module_name} calls operations {name} does not document"
    assert documented - calls == set(), f"{name} documents operations {module_name} never calls"


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_operation_declares_the_signing_headers(name: str) -> None:
    doc = _load(name)
    shared = doc.get("components", {}).get("parameters", {})
    for path, item in doc["paths"].items():
        for method, op in item.items():
            headers = set()
            for p in op.get("parameters", []):
                if "$ref" in p:
                    p = shared[p["$ref"].rsplit("/", 1)[1]]
                if p["in"] == "header" and p["required"]:
                    headers.add(p["name"])
            assert headers >= SIGNING_HEADERS, (
                f"{name}: {method.upper()} {path} lacks {SIGNING_HEADERS - headers}"
            )


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_the_sandbox_serves_every_documented_operation(name: str) -> None:
    _, routes_of = PROTOCOLS[name]
    served = {
        (method, _template(route.path))
        for route in routes_of()
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    missing = _documented(_load(name)) - served
    assert missing == set(), f"{name} documents operations its sandbox does not serve: {missing}"


def test_the_path_reader_finds_every_kind_of_path() -> None:
    """The reader above is what keeps the documents honest: a path written as a literal, an
    f-string or a module constant, with its method positional, by keyword or the module's own."""
    calls = adapter_calls("columns.gov_services.postal")
    assert calls == {("POST", "/v1/waybills"), ("GET", "/v1/waybills/{}")}
    assert adapter_calls("identity.face.remote") == {("POST", "/v1/liveness/verify")}
    assert ("POST", "/v1/certificate/issue") in adapter_calls("app_api.platform.datahub.service")
