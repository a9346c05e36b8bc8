"""Settings of the identity package (prefix ``WOJIA_IDENTITY_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import (
    WojiaSettings,
    adapter_url,
    check_base_url,
    get_settings,
    refuse_empty_url,
)

DEV_REAL_PERSON_SECRET = "dev-real-person-secret"
REAL_PERSON_SANDBOX = "/sandbox/realperson"


class IdentitySettings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_IDENTITY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Face distance (dlib 128-d, Euclidean) at or under which the best frame matches the ID photo.
    # 0.5, stricter than dlib's 0.6: see docs/identity.md for the evidence and its limits.
    face_tolerance: float = Field(default=0.5, gt=0, lt=1)
    # Every frame of one challenge must lie within this distance of the best frame.
    frame_tolerance: float = Field(default=0.5, gt=0, lt=1)

    # Upload limits, checked before any decoding work.
    max_image_bytes: int = 4 * 1024 * 1024
    # Checked from the image header, before the pixels are decoded: a 12 MP phone photo passes,
    # a 50 MP one is refused.
    max_image_pixels: int = 16_000_000
    min_frames: int = 4
    max_frames: int = 16
    max_frames_total_bytes: int = 16 * 1024 * 1024
    # HOG detection runs on frames downscaled so that the longer side is at most this.
    detect_max_side: int = 640
    detect_upsample: int = 1

    # Face work runs in a process pool: workers, in-flight jobs allowed, seconds per job.
    face_workers: int = 2
    face_max_inflight: int = 8
    face_job_timeout_s: float = 20.0
    # The pool's workers start on the first face job and stop after this many seconds without
    # one (0: they stay until shutdown). Each holds the dlib models, about 160 MB.
    face_pool_idle_s: float = Field(default=300.0, ge=0)

    # Liveness from landmarks (see identity.face.liveness).
    blink_closed_ratio: float = 0.6
    blink_open_ratio: float = 0.85
    turn_threshold: float = 0.25

    # Real-name (L2) lookups per account per day; face verification failures per account per day
    # before face verification locks until the day's counter expires; challenges per day.
    real_name_attempts_per_day: int = 5
    face_failures_per_day: int = 5
    challenges_per_day: int = 30
    challenge_ttl_s: int = 120
    step_up_ttl_s: int = 300

    verifier: Literal["local", "remote"] = "local"
    # The licensed real-person service (``verifier = "remote"``). Empty: the development sandbox
    # under the public base URL (``real_person_endpoint``); required outside development.
    real_person_url: str = ""
    real_person_app_id: str = "wojia-dev"
    real_person_secret: SecretStr = SecretStr(DEV_REAL_PERSON_SECRET)
    # The remote service answers with a similarity score 0-100; at or above this it is a match.
    # Set it from the licensed service's own documentation; 50 matches the sandbox's 100 x (1 - distance)
    # scale at the local tolerance of 0.5.
    real_person_min_similarity: float = 50.0

    @field_validator("real_person_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_base_url("WOJIA_IDENTITY_REAL_PERSON_URL", value)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.verifier == "remote":
            environment = get_settings().environment
            self.refuse_dev_secrets(
                environment,
                {"WOJIA_IDENTITY_REAL_PERSON_SECRET": (self.real_person_secret, DEV_REAL_PERSON_SECRET)},
            )
            refuse_empty_url(environment, "WOJIA_IDENTITY_REAL_PERSON_URL", self.real_person_url)
        return self

    @property
    def real_person_endpoint(self) -> str:
        return adapter_url("WOJIA_IDENTITY_REAL_PERSON_URL", self.real_person_url, REAL_PERSON_SANDBOX)


@lru_cache
def get_identity_settings() -> IdentitySettings:
    return IdentitySettings()
