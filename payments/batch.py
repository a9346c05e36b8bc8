"""Group commit for provider notifications.

A notification's own work (reading the body, checking the signature) runs in its request; applying
it to the ledger is handed to the process's batcher, which applies whatever has arrived meanwhile in
one transaction (``notifications.apply_notifications``) and answers each request after the commit. Under
load a batch holds tens of notifications and costs about as many statements as one; alone, a
notification waits for nobody (a batch of one starts at once).

Exactly-once does not depend on the batching: orders are locked and notifications are unique per
provider transaction in the database, across batches and processes. A batch that fails as a whole
(a deadlock, a constraint) is rolled back entirely and its notifications are applied again one per
transaction, so one bad notification never takes the others down with it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Mapping

from app_api.core.db import session_scope
from app_api.core.logging import request_id_var
from payments import notifications
from payments.notifications import NotificationOutcome, ReceivedNotification
from payments.providers.base import Notification

log = logging.getLogger(__name__)

MAX_BATCH = 64

_Waiting = tuple[ReceivedNotification, "asyncio.Future[NotificationOutcome]"]


class NotificationBatcher:
    """One per event loop; its worker task runs only while notifications are waiting."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self._waiting: deque[_Waiting] = deque()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # figures for the benchmark and tests
        self.largest = 0

    async def apply(self, note: Notification, body: bytes, headers: Mapping[str, str]) -> NotificationOutcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[NotificationOutcome] = loop.create_future()
        item = ReceivedNotification(
            note=note, body=body, headers=dict(headers), request_id=request_id_var.get()
        )
        self._waiting.append((item, future))
        if self._worker is None:
            self._worker = loop.create_task(self._work(), name="payments-notification-batcher")
        # shield: a provider hanging up does not cancel a batch that other requests wait for.
        return await asyncio.shield(future)

    def _take(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        keys: set[str] = set()
        held: list[_Waiting] = []
        while self._waiting and len(batch) < self.max_batch:
            entry = self._waiting.popleft()
            key = entry[0].note.dedupe_key
            if key in keys:
                held.append(entry)  # a repeat: it runs in the next batch and is told "duplicate"
            else:
                keys.add(key)
                batch.append(entry)
        self._waiting.extendleft(reversed(held))
        return batch

    async def _work(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                batch = self._take()
                self.batches += 1
                self.largest = max(self.largest, len(batch))
                await self._apply(batch)
                batch = []
        except BaseException:
            # Cancelled (the loop is shutting down): nobody is left waiting forever.
            for _, future in [*batch, *self._waiting]:
                if not future.done():
                    future.set_exception(RuntimeError("notification batch interrupted"))
            self._waiting.clear()
            raise
        finally:
            self._worker = None

    async def _apply(self, batch: list[_Waiting]) -> None:
        items = [item for item, _ in batch]
        try:
            async with session_scope() as session:
                outcomes = await notifications.apply_notifications(session, items)
        except Exception:
            log.warning("payments: a batch of %d notifications failed; applying them one by one", len(batch))
            await self._one_by_one(batch)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def _one_by_one(self, batch: list[_Waiting]) -> None:
        for item, future in batch:
            token = request_id_var.set(item.request_id)
            try:
                async with session_scope() as session:
                    outcome = await notifications.apply_notification(
                        session, note=item.note, body=item.body, headers=item.headers
                    )
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(outcome)
            finally:
                request_id_var.reset(token)


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, NotificationBatcher] = (
    weakref.WeakKeyDictionary()
)


def batcher() -> NotificationBatcher:
    """The running loop's batcher (tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    found = _batchers.get(loop)
    if found is None:
        found = _batchers[loop] = NotificationBatcher()
    return found
