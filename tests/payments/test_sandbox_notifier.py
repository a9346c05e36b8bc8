"""The providers' sandboxes deliver notifications as the providers do: a delivery that fails for any
reason is recorded as not delivered and retried when asked, never an error for the one who paid."""

from __future__ import annotations

import httpx

from payments.sandbox.common import Delivery, Notifier, OutgoingNotification


class FlakyTransport(httpx.AsyncBaseTransport):
    """Fails the first request the way a connection torn down mid-setup did in the fault suite
    (anyio: AttributeError from a socket already closed), then answers 200."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 1:
            raise AttributeError("'NoneType' object has no attribute 'getpeername'")
        return httpx.Response(200, content=b"<xml><return_code>SUCCESS</return_code></xml>")


async def test_a_delivery_that_fails_oddly_is_recorded_and_retried() -> None:
    transport = FlakyTransport()
    notifier = Notifier(transport)
    note = OutgoingNotification(
        url="http://merchant.test/notify",
        body=b"<xml/>",
        headers={},
        label="pay:ORDER1",
        delivery=Delivery(retries=1),
    )
    records = await notifier.submit(note)
    assert [r.status_code for r in records] == [None, 200]
    assert b"getpeername" in records[0].response
    assert transport.calls == 2 and len(notifier.log) == 2
