"""The face engine: CPU-bound face work in a process pool, off the event loop.

Bounded: at most ``max_inflight`` jobs are queued or running; past that a caller waits up to the
job timeout for a slot and then gets ``identity.face_engine_busy``. A job that exceeds the timeout
answers ``identity.face_engine_timeout``; its slot is released only when the worker really
finishes (a process-pool job cannot be interrupted), so a stuck image cannot make the pool accept
more work than it can do.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from identity.errors import FaceEngineBusy, FaceEngineTimeout
from identity.face.engine import FaceAnalysis, analyse_image, warm_up
from identity.face.image import ImageLimits


class FaceEngine:
    def __init__(
        self,
        *,
        limits: ImageLimits,
        workers: int = 2,
        max_inflight: int = 8,
        timeout_s: float = 20.0,
        upsample: int = 1,
    ) -> None:
        self.limits = limits
        self.workers = workers
        self.max_inflight = max_inflight
        self.timeout_s = timeout_s
        self.upsample = upsample
        self._pool: ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(max_inflight)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the api process has threads and an event loop that must not be
            # duplicated into the workers.
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=warm_up
            )
        return self._pool

    async def start(self) -> None:
        """Start the workers and load the models now rather than on the first resident's upload."""
        pool = self._executor()
        await asyncio.gather(*(asyncio.wrap_future(pool.submit(warm_up)) for _ in range(self.workers)))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    @property
    def inflight(self) -> int:
        return self.max_inflight - self._slots._value

    async def analyse(self, data: bytes, *, encode: bool = True) -> FaceAnalysis:
        """Decode, detect, landmarks and encode one image in a worker."""
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.timeout_s)
        except TimeoutError:
            raise FaceEngineBusy() from None
        loop = asyncio.get_running_loop()
        try:
            fut: Future[FaceAnalysis] = self._executor().submit(
                analyse_image, data, self.limits, upsample=self.upsample, encode=encode
            )
        except BaseException:
            self._slots.release()
            raise
        # Release the slot when the worker is done, whether or not anyone still waits for it.
        fut.add_done_callback(lambda _f: loop.call_soon_threadsafe(self._slots.release))
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout=self.timeout_s)
        except TimeoutError:
            raise FaceEngineTimeout() from None

    async def analyse_many(self, images: Sequence[bytes]) -> list[FaceAnalysis]:
        return list(await asyncio.gather(*(self.analyse(b) for b in images)))


_engine: FaceEngine | None = None


def get_face_engine() -> FaceEngine:
    """The process-wide engine, configured from the identity settings."""
    global _engine
    if _engine is None:
        from identity.config import get_identity_settings

        s = get_identity_settings()
        _engine = FaceEngine(
            limits=ImageLimits(s.max_image_bytes, s.max_image_pixels, s.detect_max_side),
            workers=s.face_workers,
            max_inflight=s.face_max_inflight,
            timeout_s=s.face_job_timeout_s,
            upsample=s.detect_upsample,
        )
    return _engine


async def close_face_engine() -> None:
    global _engine
    if _engine is not None:
        engine, _engine = _engine, None
        await engine.close()
