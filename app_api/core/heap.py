"""The start-up heap kept out of the cyclic garbage collector's full collections.

An api process holds about 280,000 tracked objects once started (modules, routes, models, the
columns' tables and templates). Every full (oldest-generation) collection walks all of them: about
200 ms on a 2-vCPU EPYC, during which the event loop serves nothing. Every request in flight waits,
and a lag that long passes ``WOJIA_SHED_LOOP_LAG_MS`` (200 ms), so requests are shed. Those objects
live as long as the process, so after start-up they are moved to the permanent generation
(:func:`gc.freeze`, the practice CPython documents for long-lived servers). Full collections then
walk only what was made since: under a millisecond right after start-up.

Cyclic garbage is collected first, so nothing collectable is frozen. The heap is unfrozen at
shutdown, so a process that starts the app again (the tests) does not keep the old one for good.
"""

from __future__ import annotations

import gc
import logging
import time

from prometheus_client import Gauge

log = logging.getLogger(__name__)

FROZEN = Gauge(
    "wojia_gc_frozen_objects",
    "Objects of the start-up heap kept out of full garbage collections (smallest among live processes)",
    multiprocess_mode="livemin",
)


def freeze_startup_heap() -> int:
    """Collect, then move every tracked object to the permanent generation. Returns their count."""
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    FROZEN.set(frozen)
    log.info("start-up heap frozen: %d objects (%.0f ms)", frozen, (time.perf_counter() - t0) * 1000)
    return frozen


def unfreeze_heap() -> None:
    gc.unfreeze()
    FROZEN.set(0)
