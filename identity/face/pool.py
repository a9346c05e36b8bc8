"""The face engine: CPU-bound face work in a process pool, off the event loop.

The pool's worker processes start on the first face job, not with the api: each loads the dlib
models (about 160 MB), and most api processes never see a face check. After ``idle_s`` seconds
without a job the workers are stopped again; the next job starts a fresh pool. A worker that died
(killed, out of memory) breaks the whole executor; the broken pool is dropped and the job is tried
once more on a fresh one.

Bounded: at most ``max_inflight`` jobs are queued or running; past that a caller waits up to the
job timeout for a slot and then gets ``identity.face_engine_busy``. A job that exceeds the timeout
answers ``identity.face_engine_timeout``; its slot is released only when the worker really
finishes (a process-pool job cannot be interrupted), so a stuck image cannot make the pool accept
more work than it can do.

Two kinds of job: one image (``analyse``, ``face_job_timeout_s``) and one whole capture
(``capture``: a clip or timed burst checked against the challenge by ``capture_job``,
``face_capture_timeout_s``). A capture holds one worker for seconds; the api's event loop only
awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from identity.errors import FaceEngineBusy, FaceEngineFailed, FaceEngineTimeout
from identity.face.capture import CaptureLimits, CaptureOutcome, capture_job
from identity.face.engine import FaceAnalysis, analyse_image, warm_up
from identity.face.image import ImageLimits

log = logging.getLogger(__name__)
T = TypeVar("T")


class FaceEngine:
    def __init__(
        self,
        *,
        limits: ImageLimits,
        workers: int = 2,
        max_inflight: int = 8,
        timeout_s: float = 20.0,
        upsample: int = 1,
        idle_s: float = 0.0,
        capture_timeout_s: float = 60.0,
        capture_limits: CaptureLimits | None = None,
        capture_fps: float = 15.0,
        capture_upsample: int = 0,
    ) -> None:
        """``idle_s``: stop the worker processes after this many seconds without a job (0: keep
        them until :meth:`close`). ``capture_timeout_s``: the budget of one capture job (a whole
        clip: one detection and encoding per analysed frame), much longer than one image's."""
        self.limits = limits
        self.workers = workers
        self.max_inflight = max_inflight
        self.timeout_s = timeout_s
        self.capture_timeout_s = capture_timeout_s
        self.capture_limits = capture_limits or CaptureLimits()
        self.capture_fps = capture_fps
        self.capture_upsample = capture_upsample
        self.upsample = upsample
        self.idle_s = idle_s
        self._pool: ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(max_inflight)
        self._last_used = time.monotonic()
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    def _executor(self) -> ProcessPoolExecutor:
        # Synchronous from the check to the assignment (no await in between): two jobs arriving
        # together on the event loop start one pool.
        if self._pool is None:
            # spawn, not fork: the api process has threads and an event loop that must not be
            # duplicated into the workers. Processes are spawned as jobs need them.
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=warm_up
            )
            if self.idle_s > 0:
                self._reaper = asyncio.get_running_loop().create_task(self._reap(self._pool))
        return self._pool

    @property
    def running(self) -> bool:
        """Whether a pool (and so, once a job was submitted, its worker processes) exists."""
        return self._pool is not None

    async def start(self) -> None:
        """Start the workers and load the models now rather than on the first resident's upload."""
        pool = self._executor()
        self._last_used = time.monotonic()
        await asyncio.gather(*(asyncio.wrap_future(pool.submit(warm_up)) for _ in range(self.workers)))

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        """Forget ``pool`` (if it is still the current one) and stop it in the background."""
        if self._pool is pool:
            self._pool = None
            if self._reaper is not None and self._reaper is not asyncio.current_task():
                self._reaper.cancel()
            self._reaper = None
        task = asyncio.get_running_loop().create_task(_shutdown(pool))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _reap(self, pool: ProcessPoolExecutor) -> None:
        while self._pool is pool:
            idle_for = time.monotonic() - self._last_used
            if self.inflight == 0 and idle_for >= self.idle_s:
                log.info("face engine idle for %.0f s: stopping its workers", idle_for)
                self._drop(pool)
                return
            await asyncio.sleep(max(self.idle_s - idle_for, 0.05))

    async def close(self) -> None:
        if self._pool is not None:
            self._drop(self._pool)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    @property
    def inflight(self) -> int:
        return self.max_inflight - self._slots._value

    async def analyse(self, data: bytes, *, encode: bool = True) -> FaceAnalysis:
        """Decode, detect, landmarks and encode one image in a worker."""
        return await self._run(
            analyse_image, data, self.limits, upsample=self.upsample, encode=encode, timeout_s=self.timeout_s
        )

    async def capture(
        self,
        steps: Sequence[str],
        *,
        clip: bytes | None = None,
        burst: Sequence[bytes] | None = None,
        timestamps_ms: Sequence[float] | None = None,
        step_windows_ms: Sequence[tuple[float, float]] | None = None,
    ) -> CaptureOutcome:
        """One whole capture (a clip, or a burst with its timestamps) checked against the challenge's
        steps in one worker (``identity.face.capture.capture_job``), under ``capture_timeout_s``."""
        return await self._run(
            capture_job,
            list(steps),
            clip=clip,
            burst=list(burst) if burst is not None else None,
            timestamps_ms=list(timestamps_ms) if timestamps_ms is not None else None,
            step_windows_ms=list(step_windows_ms) if step_windows_ms is not None else None,
            limits=self.capture_limits,
            upsample=self.capture_upsample,
            analyse_fps=self.capture_fps,
            timeout_s=self.capture_timeout_s,
        )

    async def _run(self, fn: Callable[..., T], *args: Any, timeout_s: float, **kwargs: Any) -> T:
        try:
            return await self._run_once(fn, args, kwargs, timeout_s)
        except BrokenProcessPool:
            # A worker died under this job (or just before it: the executor notices a dead
            # worker only asynchronously). Once more on a fresh pool; a second death is an error.
            log.warning("face engine worker died; retrying the job on a fresh pool")
            try:
                return await self._run_once(fn, args, kwargs, timeout_s)
            except BrokenProcessPool:
                raise FaceEngineFailed() from None

    async def _run_once(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], timeout_s: float
    ) -> T:
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=timeout_s)
        except TimeoutError:
            raise FaceEngineBusy() from None
        loop = asyncio.get_running_loop()
        try:
            fut = self._submit(fn, args, kwargs)
        except BaseException:
            self._slots.release()
            raise

        def done(_f: Future[T]) -> None:
            # Release the slot when the worker is done, whether or not anyone still waits for it.
            self._last_used = time.monotonic()
            self._slots.release()

        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(done, f))
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout=timeout_s)
        except TimeoutError:
            raise FaceEngineTimeout() from None

    def _submit(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[T]:
        self._last_used = time.monotonic()
        for attempt in (1, 2):
            pool = self._executor()
            try:
                return pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                # The pool broke while idle (a worker was killed): replace it.
                self._drop(pool)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def analyse_many(self, images: Sequence[bytes]) -> list[FaceAnalysis]:
        return list(await asyncio.gather(*(self.analyse(b) for b in images)))


async def _shutdown(pool: ProcessPoolExecutor) -> None:
    with contextlib.suppress(Exception):
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


_engine: FaceEngine | None = None


def get_face_engine() -> FaceEngine:
    """The process-wide engine, configured from the identity settings (its workers start on the
    first job)."""
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
            idle_s=s.face_pool_idle_s,
            capture_timeout_s=s.face_capture_timeout_s,
            capture_fps=s.capture_analyse_fps,
            capture_upsample=s.capture_detect_upsample,
        )
    return _engine


async def close_face_engine() -> None:
    global _engine
    if _engine is not None:
        engine, _engine = _engine, None
        await engine.close()
