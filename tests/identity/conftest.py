"""Fixtures for the face engine tests: the real face_recognition on ../shared/faces.

Face work is slow on the shared cores, so every image is analysed at most once per session.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from identity_helpers import FACES, LIMITS, face_bytes

from identity.face.engine import FaceAnalysis, analyse_image
from identity.face.pool import FaceEngine


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not FACES.is_dir():
        pytest.skip(f"test faces not found at {FACES}")
    return FACES


@pytest.fixture(scope="session")
def analysed(faces_dir: Path) -> Callable[[str], FaceAnalysis]:
    """analysed("obama_1.jpg"): the in-process analysis of a test image, computed once."""
    cache: dict[str, FaceAnalysis] = {}

    def get(name: str) -> FaceAnalysis:
        if name not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[name] = analyse_image(face_bytes(name), LIMITS)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def closed_eyes_obama(analysed: Callable[[str], FaceAnalysis]) -> bytes:
    """obama_1.jpg with both eyes painted shut (detected again by the real engine in the tests)."""
    from face_synth import paint_closed_eyes

    a = analysed("obama_1.jpg")
    return paint_closed_eyes(face_bytes("obama_1.jpg"), a.points, a.scale)


@pytest.fixture(scope="session")
async def engine(faces_dir: Path) -> AsyncIterator[FaceEngine]:
    eng = FaceEngine(limits=LIMITS, workers=2, max_inflight=8, timeout_s=60)
    await eng.start()
    yield eng
    await eng.close()
