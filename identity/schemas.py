"""Request and response bodies of the identity endpoints."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class RealNameIn(BaseModel):
    name: str = Field(min_length=2, max_length=30, description="姓名（与身份证一致）")
    id_number: str = Field(min_length=15, max_length=20, description="18位居民身份证号码")
    agree: bool = Field(description="同意向城市数据中心核验")


class ConsentIn(BaseModel):
    agree: bool = Field(description="已阅读并同意人脸信息处理说明")


class ChallengeIn(BaseModel):
    purpose: str = Field(default="identity.l3", max_length=60, description="认证用途，如 loan.apply")


class AttestationIn(BaseModel):
    resident_phone: str = Field(pattern=r"^1[0-9]{10}$")
    id_number: str = Field(min_length=15, max_length=20)
    name: str = Field(min_length=2, max_length=30)
    document: str = Field(default="resident_id_card", pattern=r"^(resident_id_card|temporary_id_card)$")
    resident_agreed: bool


class InPersonStepUpIn(BaseModel):
    purpose: str = Field(max_length=60, description="需要再次认证的用途，如 loans.apply")


class AgentStepUpIn(BaseModel):
    resident_phone: str = Field(pattern=r"^1[0-9]{10}$")
    request_id: str = Field(min_length=16, max_length=64, description="居民手机上显示的核验请求编号")
    id_number: str = Field(min_length=15, max_length=20)
    name: str = Field(min_length=2, max_length=30)
    document: str = Field(default="resident_id_card", pattern=r"^(resident_id_card|temporary_id_card)$")
    resident_agreed: bool


# Responses. Every field is always present (None included): the JSON the routes answered before
# they had models.


class RealNameOut(BaseModel):
    identity_level: int
    real_name: str
    id_number: str


class FaceConsentOut(BaseModel):
    consent_id: str
    purpose: str
    scopes: list[str]
    text: str
    granted_at: dt.datetime


class FaceDataDeletedOut(BaseModel):
    consents_withdrawn: int
    face_data_deleted: bool


class ChallengeFrames(BaseModel):
    """What the upload of the challenge's frames may hold."""

    min: int
    max: int
    max_bytes_each: int
    max_bytes_total: int
    max_pixels: int
    formats: list[str]


class ChallengeCapture(BaseModel):
    """What the capture (one clip, or one burst with a timestamp per frame) must be."""

    min_fps: float
    max_fps: float
    min_duration_ms: float
    max_duration_ms: float
    min_frames: int
    max_frames: int
    max_bytes: int
    max_pixels: int
    clip_formats: list[str]
    burst_formats: list[str]


class ChallengeOut(BaseModel):
    challenge_id: str
    steps: list[str]
    instructions: list[str]
    purpose: str
    expires_in: int
    # The stills upload of a certified remote verifier (see docs/identity.md).
    frames: ChallengeFrames
    capture: ChallengeCapture


class FaceVerifiedOut(BaseModel):
    identity_level: int
    purpose: str
    step_up_token: str
    expires_in: int


class InPersonStepUpOut(BaseModel):
    request_id: str
    purpose: str
    expires_in: int
    instructions: str


class AgentStepUpOut(BaseModel):
    attempt_id: str
    purpose: str
    station_id: str | None
    mandate_id: str


class StepUpOut(BaseModel):
    identity_level: int
    purpose: str
    step_up_token: str
    expires_in: int


class AttestationOut(BaseModel):
    attestation_id: str
    identity_level: int
    station_id: str | None


class FaceStatus(BaseModel):
    consented: bool
    data_stored: bool
    stored_at: dt.datetime | None
    failures_today: int
    failures_allowed_per_day: int
    locked: bool
    locked_for_s: int


class IdentityConsentOut(BaseModel):
    id: str
    purpose: str
    scopes: list[str]
    text: str
    granted_via: str
    granted_at: dt.datetime
    withdrawn_at: dt.datetime | None
    active: bool


class IdentityAttemptOut(BaseModel):
    id: str
    kind: str
    purpose: str | None
    outcome: str
    code: str | None
    verifier: str | None
    station_id: str | None
    at: dt.datetime


class IdentityOverview(BaseModel):
    identity_level: int
    real_name: str | None
    id_number: str | None
    face: FaceStatus
    consents: list[IdentityConsentOut]
    history: list[IdentityAttemptOut]
