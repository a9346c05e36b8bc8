"""Settings of the identity package (prefix ``WOJIA_IDENTITY_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Self
from urllib.parse import urlsplit

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
DEV_TENCENT_FACEID_SECRET_KEY = "dev-tencent-faceid-secret-key"
TENCENT_FACEID_URL = "https://faceid.tencentcloudapi.com"
# The face verifiers a deployment can name in WOJIA_IDENTITY_L3_VERIFIERS.
FACE_VERIFIERS = ("local", "remote", "tencent_faceid")


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
    # Seconds for one whole capture (a clip or timed burst) in one worker: decoding, then detection,
    # landmarks and encoding of every analysed frame. A 3 s clip analysed at 15 fps is 45 frames,
    # 7-14 s on one loaded core; the budget leaves room for a second capture queued behind it.
    face_capture_timeout_s: float = Field(default=60.0, gt=0)
    # Face work on at most this many frames a second of a capture (every frame is still validated).
    capture_analyse_fps: float = Field(default=15.0, ge=8, le=61)
    # HOG upsampling for a capture's frames. 0: faces from about 80 px (at most 640 px on the
    # longer side), which a selfie capture exceeds by far, at a quarter of the work of 1; 1 finds
    # faces from about 40 px (the still photos' setting, detect_upsample).
    capture_detect_upsample: int = Field(default=0, ge=0, le=2)
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

    verifier: Literal["local", "remote", "tencent_faceid"] = "local"
    # Which verifiers' passes may raise an account to L3: "*" (any, the default and the behaviour
    # before this setting) or a comma-separated list of names from FACE_VERIFIERS, e.g.
    # "tencent_faceid" to let only the certified service grant it (docs/identity.md says why).
    l3_verifiers: str = "*"
    # The licensed real-person service (``verifier = "remote"``). Empty: the development sandbox
    # under the public base URL (``real_person_endpoint``); required outside development.
    real_person_url: str = ""
    real_person_app_id: str = "wojia-dev"
    real_person_secret: SecretStr = SecretStr(DEV_REAL_PERSON_SECRET)
    # The remote service answers with a similarity score 0-100; at or above this it is a match.
    # Set it from the licensed service's own documentation; 50 matches the sandbox's 100 x (1 - distance)
    # scale at the local tolerance of 0.5.
    real_person_min_similarity: float = 50.0

    # Tencent Cloud FaceID (``verifier = "tencent_faceid"``, identity.face.tencent): the API's
    # endpoint as scheme://host[:port] (a development sandbox: identity.sandbox.tencent_faceid, run
    # on its own port), the CAM key pair, the region (LivenessRecognition needs none), the pass
    # mark of its Sim (70: the service's documented fixed threshold), the seconds to wait, and the
    # frame rate the frames are packed into a video at.
    tencent_faceid_url: str = TENCENT_FACEID_URL
    tencent_faceid_secret_id: str = "dev-tencent-faceid-secret-id"
    tencent_faceid_secret_key: SecretStr = SecretStr(DEV_TENCENT_FACEID_SECRET_KEY)
    tencent_faceid_region: str = ""
    tencent_faceid_min_similarity: float = Field(default=70.0, ge=0, le=100)
    tencent_faceid_timeout_s: float = Field(default=20.0, gt=0)
    tencent_faceid_fps: float = Field(default=3.0, gt=0, le=60)

    @field_validator("real_person_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_base_url("WOJIA_IDENTITY_REAL_PERSON_URL", value)

    @field_validator("tencent_faceid_url")
    @classmethod
    def _tencent_url(cls, value: str) -> str:
        value = check_base_url("WOJIA_IDENTITY_TENCENT_FACEID_URL", value, empty_ok=False)
        if urlsplit(value).path:
            raise ValueError(
                "WOJIA_IDENTITY_TENCENT_FACEID_URL: scheme://host[:port] only (the API path is /)"
            )
        return value

    @field_validator("l3_verifiers")
    @classmethod
    def _l3(cls, value: str) -> str:
        value = value.strip()
        if value == "*":
            return value
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in FACE_VERIFIERS]
        if unknown or not names:
            raise ValueError(
                f"WOJIA_IDENTITY_L3_VERIFIERS: {value!r}: '*' or names from {', '.join(FACE_VERIFIERS)}"
            )
        return ",".join(names)

    @property
    def l3_verifier_names(self) -> frozenset[str]:
        """The verifiers that may grant L3 (all of them for "*")."""
        if self.l3_verifiers == "*":
            return frozenset(FACE_VERIFIERS)
        return frozenset(self.l3_verifiers.split(","))

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.verifier == "remote":
            environment = get_settings().environment
            self.refuse_dev_secrets(
                environment,
                {"WOJIA_IDENTITY_REAL_PERSON_SECRET": (self.real_person_secret, DEV_REAL_PERSON_SECRET)},
            )
            refuse_empty_url(environment, "WOJIA_IDENTITY_REAL_PERSON_URL", self.real_person_url)
        if self.verifier == "tencent_faceid":
            self.refuse_dev_secrets(
                get_settings().environment,
                {
                    "WOJIA_IDENTITY_TENCENT_FACEID_SECRET_KEY": (
                        self.tencent_faceid_secret_key,
                        DEV_TENCENT_FACEID_SECRET_KEY,
                    )
                },
            )
        return self

    @property
    def real_person_endpoint(self) -> str:
        return adapter_url("WOJIA_IDENTITY_REAL_PERSON_URL", self.real_person_url, REAL_PERSON_SANDBOX)


@lru_cache
def get_identity_settings() -> IdentitySettings:
    return IdentitySettings()
