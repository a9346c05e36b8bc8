"""Identity: real-name levels, face verification with liveness, step-up tokens, consent.

The APIRouter is ``identity.router:router`` (included by the app under /api/v1). Nothing is
imported here, so that the face engine's worker processes, which import ``identity.face``, do not
load the web app.
"""

from __future__ import annotations

__all__ = ["shutdown", "startup"]


async def startup() -> None:
    """Start the face engine's workers (optional: they otherwise start on the first face check)."""
    from identity.config import get_identity_settings
    from identity.face.pool import get_face_engine

    if get_identity_settings().verifier == "local":
        await get_face_engine().start()


async def shutdown() -> None:
    """Stop the face engine's workers."""
    from identity.face.pool import close_face_engine

    await close_face_engine()
