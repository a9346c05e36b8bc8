"""The configured verifier (``WOJIA_IDENTITY_VERIFIER``): local face_recognition, the house-protocol
remote service or Tencent Cloud FaceID; and which of them may grant L3 (``WOJIA_IDENTITY_L3_VERIFIERS``)."""

from __future__ import annotations

from identity.config import get_identity_settings
from identity.face.image import ImageLimits
from identity.face.liveness import LivenessConfig
from identity.face.pool import get_face_engine
from identity.face.remote import RemoteRealPersonVerifier
from identity.face.tencent import TencentFaceIDVerifier
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


def may_grant_l3(verifier_name: str) -> bool:
    """May a pass of this verifier raise an account to L3? (``WOJIA_IDENTITY_L3_VERIFIERS``)"""
    return verifier_name in get_identity_settings().l3_verifier_names


def tencent_verifier() -> TencentFaceIDVerifier:
    s = get_identity_settings()
    return TencentFaceIDVerifier(
        url=s.tencent_faceid_url,
        secret_id=s.tencent_faceid_secret_id,
        secret_key=s.tencent_faceid_secret_key.get_secret_value(),
        region=s.tencent_faceid_region,
        min_similarity=s.tencent_faceid_min_similarity,
        timeout_s=s.tencent_faceid_timeout_s,
        fps=s.tencent_faceid_fps,
        limits=ImageLimits(
            max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels, max_side=s.detect_max_side
        ),
        min_frames=s.min_frames,
        max_frames=s.max_frames,
        max_total_bytes=s.max_frames_total_bytes,
    )


def get_verifier() -> FaceVerifier:
    s = get_identity_settings()
    if s.verifier == "tencent_faceid":
        return tencent_verifier()
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
