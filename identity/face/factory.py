"""The configured verifier (``WOJIA_IDENTITY_VERIFIER``): local face_recognition or a remote service."""

from __future__ import annotations

from identity.config import get_identity_settings
from identity.face.liveness import LivenessConfig
from identity.face.pool import get_face_engine
from identity.face.remote import RemoteRealPersonVerifier
from identity.face.verifier import FaceVerifier, LocalFaceVerifier


def liveness_config() -> LivenessConfig:
    s = get_identity_settings()
    return LivenessConfig(
        blink_closed_ratio=s.blink_closed_ratio,
        blink_open_ratio=s.blink_open_ratio,
        turn_threshold=s.turn_threshold,
    )


def local_verifier() -> LocalFaceVerifier:
    s = get_identity_settings()
    return LocalFaceVerifier(
        get_face_engine(),
        tolerance=s.face_tolerance,
        frame_tolerance=s.frame_tolerance,
        liveness=liveness_config(),
        min_frames=s.min_frames,
        max_frames=s.max_frames,
        max_total_bytes=s.max_frames_total_bytes,
    )


def get_verifier() -> FaceVerifier:
    s = get_identity_settings()
    if s.verifier == "remote":
        return RemoteRealPersonVerifier(
            base_url=s.real_person_endpoint,
            app_id=s.real_person_app_id,
            secret=s.real_person_secret.get_secret_value(),
            min_similarity=s.real_person_min_similarity,
            min_frames=s.min_frames,
            max_frames=s.max_frames,
            max_total_bytes=s.max_frames_total_bytes,
        )
    return local_verifier()
