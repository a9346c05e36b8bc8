"""The fuzz harness itself: it must notice what it is there to notice (a 5xx, a body off-schema)."""

from __future__ import annotations

import json

import httpx
from schemathesis.generation.modes import GenerationMode

from tests.fuzz.harness import BASE_URL, draw_cases, operations, send_and_check


def _client(status: int, body: object) -> httpx.AsyncClient:
    """An app answering every request with ``status`` and ``body`` (streamed, as an app's answer is)."""

    def answer(request: httpx.Request) -> httpx.Response:
        content = json.dumps(body).encode()
        return httpx.Response(
            status, headers={"content-type": "application/json"}, stream=httpx.ByteStream(content)
        )

    return httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url=BASE_URL)


async def test_the_harness_flags_a_server_error_and_a_body_off_schema_and_passes_a_good_answer() -> None:
    operation = operations()["GET /api/v1/me"]
    (case,) = draw_cases(operation, GenerationMode.POSITIVE, 1, "harness")
    auth = {"Authorization": "Bearer x"}
    good = {
        "id": "a1",
        "phone": "139****0000",
        "roles": ["resident"],
        "identity_level": 1,
        "elderly_mode": False,
    }

    async with _client(500, {"title": "boom"}) as client:
        finding = await send_and_check(client, case, "resident", auth)
    assert finding is not None and finding.kind == "server_error"

    async with _client(200, {"id": 1}) as client:
        finding = await send_and_check(client, case, "resident", auth)
    assert finding is not None and finding.kind == "schema", finding

    statuses: dict[int, int] = {}
    async with _client(200, good) as client:
        finding = await send_and_check(client, case, "resident", auth, statuses)
    assert finding is None, finding.render() if finding else ""
    assert statuses == {200: 1}
