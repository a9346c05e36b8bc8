"""Identity: real-name levels, face verification with liveness, step-up tokens, consent.

The APIRouter is ``identity.router:router`` (included by the app under /api/v1). Nothing is
imported here, so that the face engine's worker processes, which import ``identity.face``, do not
load the web app.

The face engine's workers are not started with the app: they start on the first face check and
stop when idle (``identity.face.pool``); shutdown stops them if they are running.
"""

from __future__ import annotations

__all__ = ["shutdown"]


async def shutdown() -> None:
    """Stop the face engine's workers."""
    from identity.face.pool import close_face_engine

    await close_face_engine()
