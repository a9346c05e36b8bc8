"""Fixtures for the face engine tests: the real face_recognition on tests/fixtures/faces.

Face work is slow on the shared cores, so every image is analysed at most once per session.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from identity_helpers import FACES, LIMITS, face_bytes

from identity.face.engine import FaceAnalysis, analyse_image
from identity.face.pool import FaceEngine
from tests.citizens import new_id_number


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    # The images are part of the repository: a missing one is a failure, not a reason to skip.
    assert FACES.is_dir(), f"test faces not found at {FACES}"
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
    # Generous budgets: the shared test machine is loaded; production uses the settings.
    eng = FaceEngine(limits=LIMITS, workers=2, max_inflight=8, timeout_s=60, capture_timeout_s=240)
    await eng.start()
    yield eng
    await eng.close()


@pytest.fixture(scope="session")
async def app(faces_dir: Path, engine: FaceEngine) -> AsyncIterator[Any]:
    """The real app with the identity router included (as the lead mounts it, under /api/v1) and
    a test-only endpoint guarded by ``require_step_up("loan.apply")``; the face engine is the
    session's pool, shared with the engine tests."""
    from asgi_lifespan import LifespanManager
    from fastapi import APIRouter, Depends

    import identity.face.pool as pool
    from app_api.wiring.app import create_app
    from identity.api import require_step_up

    application = create_app()
    guarded = APIRouter()

    @guarded.post("/api/v1/test-only/loan-apply")
    async def loan_apply(principal: Any = Depends(require_step_up("loan.apply"))) -> dict[str, str]:
        return {"applied_by": principal.id}

    application.include_router(guarded)
    previous, pool._engine = pool._engine, engine
    async with LifespanManager(application, startup_timeout=60):
        yield application
    pool._engine = previous


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[Any]:
    """A client of this directory's app: the root ``client`` is bound to the root ``app`` and, being
    session-scoped, may already exist when these tests run after others."""
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


@pytest.fixture(scope="session")
async def person_factory(app: Any) -> Callable[..., Awaitable[tuple[str, str]]]:
    """``await person(name, photo="obama_3.jpg")`` → (name, id_number): a population record in the
    local data center, with an ID photo from tests/fixtures/faces, given bytes, or none."""
    import datetime as dt
    import secrets

    from app_api.core.crypto import encrypt_bytes, encrypt_str
    from app_api.core.db import session_scope
    from app_api.platform.datahub.models import PopulationRecord
    from app_api.platform.datahub.service import id_hash

    async def person(name: str, photo: str | bytes | None = "obama_3.jpg") -> tuple[str, str]:
        birth = dt.date(1950 + secrets.randbelow(50), 1 + secrets.randbelow(12), 1 + secrets.randbelow(28))
        number = new_id_number("341602", birth)
        async with session_scope() as s:
            s.add(
                PopulationRecord(
                    id_number_hash=id_hash(number),
                    id_number_enc=encrypt_str(number, aad="id_number"),
                    name_enc=encrypt_str(name, aad="name"),
                    gender="男",
                    birth_date=birth,
                    address_enc=encrypt_str("安徽省亳州市谯城区测试路1号", aad="address"),
                    photo_enc=encrypt_bytes(
                        face_bytes(photo) if isinstance(photo, str) else photo, aad="id_photo"
                    )
                    if photo
                    else None,
                )
            )
        return name, number

    return person


@pytest.fixture(scope="session")
def motion_frames(closed_eyes_obama: bytes) -> dict[str, bytes]:
    return {
        "front": face_bytes("obama_1.jpg"),
        "closed": closed_eyes_obama,
        "left": face_bytes("obama_4.jpg"),
        "right": face_bytes("obama_2.jpg"),
    }


@pytest.fixture
def fix_steps(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], None]:
    """``fix_steps(["blink"])``: the next challenges ask for these moves (the draw is otherwise
    random; no real fixture clip performs all three moves)."""
    import identity.challenges as challenges
    from identity.face.liveness import Step

    def fix(steps: list[str]) -> None:
        monkeypatch.setattr(challenges, "draw_steps", lambda: [Step(s) for s in steps])

    return fix
