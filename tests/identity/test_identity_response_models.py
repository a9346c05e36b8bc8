"""Every identity route declares its response model, and the models keep the keys clients read."""

from __future__ import annotations

from fastapi.routing import APIRoute
from pydantic import BaseModel

from identity import schemas
from identity.router import router


def test_every_route_declares_a_response_model() -> None:
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) == 11
    for r in routes:
        assert isinstance(r.response_model, type) and issubclass(r.response_model, BaseModel), r.path


def test_response_keys_in_order() -> None:
    # The JSON keys (and their order) the routes answered when they still built dicts by hand.
    expected: dict[type[BaseModel], list[str]] = {
        schemas.RealNameOut: ["identity_level", "real_name", "id_number"],
        schemas.FaceConsentOut: ["consent_id", "purpose", "scopes", "text", "granted_at"],
        schemas.FaceDataDeletedOut: ["consents_withdrawn", "face_data_deleted"],
        schemas.ChallengeOut: [
            "challenge_id",
            "steps",
            "instructions",
            "purpose",
            "expires_in",
            "frames",
            "capture",
        ],
        schemas.ChallengeCapture: [
            "min_fps",
            "max_fps",
            "min_duration_ms",
            "max_duration_ms",
            "min_frames",
            "max_frames",
            "max_bytes",
            "max_pixels",
            "clip_formats",
            "burst_formats",
        ],
        schemas.ChallengeFrames: ["min", "max", "max_bytes_each", "max_bytes_total", "max_pixels", "formats"],
        schemas.FaceVerifiedOut: ["identity_level", "purpose", "step_up_token", "expires_in"],
        schemas.AttestationOut: ["attestation_id", "identity_level", "station_id"],
        schemas.IdentityOverview: ["identity_level", "real_name", "id_number", "face", "consents", "history"],
        schemas.FaceStatus: [
            "consented",
            "data_stored",
            "stored_at",
            "failures_today",
            "failures_allowed_per_day",
            "locked",
            "locked_for_s",
        ],
        schemas.IdentityConsentOut: [
            "id",
            "purpose",
            "scopes",
            "text",
            "granted_via",
            "granted_at",
            "withdrawn_at",
            "active",
        ],
        schemas.IdentityAttemptOut: [
            "id",
            "kind",
            "purpose",
            "outcome",
            "code",
            "verifier",
            "station_id",
            "at",
        ],
    }
    for model, keys in expected.items():
        assert list(model.model_fields) == keys, model.__name__
        # No defaults: every key is always written, None included.
        assert all(f.is_required() for f in model.model_fields.values()), model.__name__
