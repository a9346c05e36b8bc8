"""Schemathesis over the app's own OpenAPI document, sent through the test app in the test's event loop.

Schemathesis' ASGI transport runs the app in a thread with its own event loop (Starlette's test
client); the session's app holds database pools and Redis connections bound to pytest's loop, so
cases are *generated* by schemathesis (hypothesis strategies, fixed seed) and *sent* here through
``httpx.ASGITransport`` on the session loop, then checked with schemathesis' own checks.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation.case import Case
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app_api.core.input_guard import REFUSED

BASE_URL = "http://testserver"
# One request taking longer than this is a failure of its own (a hang is as bad as a 500).
REQUEST_TIMEOUT = 15.0
CHECKS = [not_a_server_error, response_schema_conformance]
# Not enforced: the document declares 200/422 only, while the API answers 401/403/404/409 as
# problem+json (and 422 as problem+json, not FastAPI's HTTPValidationError); with
# WOJIA_FUZZ_CONFORMANCE=1 these checks run too, to count what declaring those answers would take.
CONFORMANCE = [status_code_conformance, content_type_conformance]


def checks() -> list[Any]:
    return CHECKS + (CONFORMANCE if os.environ.get("WOJIA_FUZZ_CONFORMANCE") == "1" else [])


@cache
def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document as ``/openapi.json`` serves it (built once, without a lifespan)."""
    from app_api.wiring.app import create_app

    document: dict[str, Any] = create_app().openapi()
    return document


@cache
def schema() -> Any:
    """The document without its security requirements: each role's token is sent on every case, and
    schemathesis would otherwise spend negative cases on leaving the token out (a 401, every time)."""
    document = copy.deepcopy(openapi_document())
    for operations_of_path in document["paths"].values():
        for operation in operations_of_path.values():
            operation.pop("security", None)
    document.get("components", {}).pop("securitySchemes", None)
    return schemathesis.openapi.from_dict(document)


def operations() -> dict[str, APIOperation]:
    """Every operation of the document, by its label (``GET /api/v1/me``)."""
    found: dict[str, APIOperation] = {}
    for result in schema().get_all_operations():
        operation = result.ok()
        found[operation.label] = operation
    return found


def labels() -> list[str]:
    return sorted(operations())


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return REFUSED.sub("x", value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def scrub(case: Case) -> Case:
    """The case with every character the input guard refuses (control characters, lone surrogates)
    replaced by "x", lengths kept: such a case would stop at the guard's 422 and never reach the
    operation's own code."""
    for part in ("path_parameters", "query", "headers", "cookies", "body"):
        value = getattr(case, part)
        if isinstance(value, (str, dict, list)):
            setattr(case, part, _scrub(value))
    return case


def draw_cases(
    operation: APIOperation,
    mode: GenerationMode,
    count: int,
    seed_text: str,
    path_parameters: dict[str, Any] | None = None,
    clean: bool = False,
) -> list[Case]:
    """``count`` cases (fewer when the operation's input space is smaller), the same for the same seed;
    ``clean``: scrubbed of what the input guard refuses."""
    drawn: list[Case] = []
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
    if clean:
        strategy = strategy.map(scrub)

    @hypothesis.seed(zlib.crc32(seed_text.encode()))
    @hypothesis.settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
        print_blob=False,
    )
    @hypothesis.given(strategy)
    def collect(case: Case) -> None:
        drawn.append(case)

    try:
        collect()
    except hypothesis.errors.Unsatisfiable:
        # No such input exists (an operation without parameters has no invalid input).
        return []
    return drawn


@dataclass
class Finding:
    """One failed case: what was sent, what came back, and which checks it broke."""

    role: str
    label: str
    kind: str  # "server_error", "schema", "timeout", "transport"
    method: str
    url: str
    body: str
    status: int | None
    response: str
    messages: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [
            f"[{self.kind}] {self.role}: {self.method} {self.url} -> {self.status}",
        ]
        if self.body:
            lines.append(f"  body: {self.body}")
        lines.append(f"  response: {self.response}")
        lines.extend(f"  {m}" for m in self.messages)
        return "\n".join(lines)


def _short(data: bytes | str | None, limit: int = 400) -> str:
    if data is None:
        return ""
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _kind(failure: Failure) -> str:
    name = type(failure).__name__
    if name == "ServerError":
        return "server_error"
    if name in ("UndefinedStatusCode", "UndefinedContentType", "MalformedMediaType"):
        return "conformance"
    return "schema"


async def send_and_check(
    client: httpx.AsyncClient,
    case: Case,
    role: str,
    headers: dict[str, str],
    statuses: dict[int, int] | None = None,
) -> Finding | None:
    """Send one case with the role's headers; a Finding when the response breaks a check."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=headers)
    kwargs.pop("auth", None)
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=dict(kwargs.get("headers") or {}),
        params=kwargs.get("params"),
        cookies=kwargs.get("cookies"),
        data=kwargs.get("data"),
        json=kwargs.get("json"),
        files=kwargs.get("files"),
    ).prepare()
    body = prepared.body
    method = str(prepared.method)
    url = str(prepared.url)
    shown_body = _short(body if isinstance(body, (bytes, str)) else None)
    try:
        response = await asyncio.wait_for(
            client.request(method, url, headers=dict(prepared.headers), content=body),
            REQUEST_TIMEOUT,
        )
    except TimeoutError:
        return Finding(role, case.operation.label, "timeout", method, url, shown_body, None, "", [])
    except Exception as exc:  # an exception escaping the ASGI app is a server error too
        return Finding(
            role, case.operation.label, "server_error", method, url, shown_body, None, repr(exc), ["raised"]
        )
    trace = os.environ.get("WOJIA_FUZZ_TRACE")
    if trace:  # every case, for a look at what the operations answered
        with open(trace, "a", encoding="utf-8") as fh:
            row = [role, method, url, shown_body, response.status_code, _short(response.content, 300)]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    if statuses is not None:
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    try:
        case.validate_response(response, checks=checks(), headers=headers)
    except FailureGroup as group:
        failures = list(group.exceptions)
        kinds = {_kind(f) for f in failures}
        kind = next(k for k in ("server_error", "schema", "conformance") if k in kinds or k == "conformance")
        return Finding(
            role,
            case.operation.label,
            kind,
            method,
            url,
            shown_body,
            response.status_code,
            _short(response.content),
            [f"{f.title}: {_short(f.message, 600)}" for f in failures],
        )
    if response.status_code >= 500:
        return Finding(
            role,
            case.operation.label,
            "server_error",
            method,
            url,
            shown_body,
            response.status_code,
            _short(response.content),
            [],
        )
    return None


def summarise(findings: list[Finding]) -> str:
    return "\n".join(f.render() for f in findings)


def dump(findings: list[Finding]) -> str:
    return json.dumps([f.__dict__ for f in findings], ensure_ascii=False)
