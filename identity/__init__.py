"""Identity: real-name levels, face verification with liveness, step-up tokens, consent.

``identity.router`` is the APIRouter the app includes (under /api/v1); it is imported lazily so
that the face engine's worker processes, which import ``identity.face``, do not load FastAPI routes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["router", "shutdown", "startup"]


def __getattr__(name: str) -> Any:
    if name == "router":
        from identity.router import router

        return router
    raise AttributeError(name)


async def startup() -> None:
    """Start the face engine's workers (optional: they otherwise start on the first face check)."""
    from identity.config import get_identity_settings
    from identity.face.pool import get_face_engine

    if get_identity_settings().verifier == "local":
        await get_face_engine().start()


async def shutdown() -> None:
    from identity.face.pool import close_face_engine

    await close_face_engine()
