"""Identity endpoints (mounted by the app under /api/v1): real-name, face consent, liveness
challenges and face verification, agent attestation, the in-person step-up, and the resident's own
view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import JSONResponse

from app_api.core.crypto import mask_id_number, mask_name
from app_api.core.db import SessionDep
from app_api.core.errors import PROBLEM_JSON, AppError
from app_api.core.logging import request_id_var
from app_api.platform.access import CurrentAccount, require_roles
from app_api.platform.accounts.principal import Principal
from identity import attestation, face_data, overview, step_up
from identity.attempts import AttemptRecorded
from identity.challenges import issue_challenge
from identity.config import get_identity_settings
from identity.face.capture import CaptureLimits
from identity.real_name import verify_real_name
from identity.schemas import (
    AgentStepUpIn,
    AgentStepUpOut,
    AttestationIn,
    AttestationOut,
    ChallengeIn,
    ChallengeOut,
    ConsentIn,
    FaceConsentOut,
    FaceDataDeletedOut,
    FaceVerifiedOut,
    IdentityOverview,
    InPersonStepUpIn,
    InPersonStepUpOut,
    RealNameIn,
    RealNameOut,
    StepUpOut,
)
from identity.verification import verify_face

router = APIRouter(prefix="/identity", tags=["identity"])
Agent = Annotated[Principal, Depends(require_roles("agent"))]


def _problem(err: AppError, request: Request) -> JSONResponse:
    # Returned, not raised: the request's session then commits the attempt's record and audit line.
    return JSONResponse(
        err.to_problem(instance=request.url.path, request_id=request_id_var.get()),
        status_code=err.status,
        media_type=PROBLEM_JSON,
        headers={"retry-after": str(err.extra["retry_after"])} if "retry_after" in err.extra else None,
    )


@router.post("/real-name", response_model=RealNameOut)
async def real_name(
    body: RealNameIn, principal: CurrentAccount, session: SessionDep, request: Request
) -> RealNameOut | JSONResponse:
    """Real-name check (L2): name and citizen ID number against the population records."""
    try:
        account = await verify_real_name(
            session, account_id=principal.id, name=body.name, id_number=body.id_number, agree=body.agree
        )
    except AttemptRecorded as e:
        return _problem(e.error, request)
    return RealNameOut(
        identity_level=max(2, account.identity_level),
        real_name=mask_name(account.real_name or ""),
        id_number=mask_id_number(account.id_number or ""),
    )


@router.post("/face/consent")
async def face_consent(body: ConsentIn, principal: CurrentAccount, session: SessionDep) -> FaceConsentOut:
    """Consent to face processing (separate from every other consent); needed before face checks."""
    c = await face_data.grant_face_consent(session, account_id=principal.id, agree=body.agree)
    return FaceConsentOut(
        consent_id=c.id, purpose=c.purpose, scopes=c.scopes, text=c.text, granted_at=c.granted_at
    )


@router.delete("/face/consent")
async def withdraw_face_consent(principal: CurrentAccount, session: SessionDep) -> FaceDataDeletedOut:
    """Withdraw the face consent: the stored face template and ID photo are deleted at once."""
    return await face_data.withdraw_face_consent(session, account_id=principal.id)


@router.post("/face/challenges", status_code=201)
async def face_challenge(body: ChallengeIn, principal: CurrentAccount, session: SessionDep) -> ChallengeOut:
    """Start a face check: a random order of blink / turn left / turn right, valid 2 minutes, once."""
    return await issue_challenge(session, principal=principal, purpose=body.purpose)


@router.post("/face/verifications", response_model=FaceVerifiedOut)
async def face_verification(
    principal: CurrentAccount,
    session: SessionDep,
    request: Request,
    challenge_id: Annotated[str, Form(min_length=10, max_length=100)],
    clip: Annotated[
        UploadFile | None, File(description="一段连续拍摄的视频（MP4/AVI/MPEG/GIF），按提示完成全部动作")
    ] = None,
    frames: Annotated[
        list[UploadFile] | None, File(description="或：连拍画面（JPEG/PNG/WebP），按时间顺序")
    ] = None,
    timestamps_ms: Annotated[
        str | None, Form(max_length=20_000, description="连拍时每帧的拍摄时间（毫秒，JSON 数组）")
    ] = None,
    step_windows_ms: Annotated[
        str | None,
        Form(max_length=2_000, description="可选：每个动作提示显示的时间段（距第一帧的毫秒，JSON 数组）"),
    ] = None,
) -> FaceVerifiedOut | JSONResponse:
    """Upload one capture of the challenge (a clip, or a timed burst); on success L3 and a step-up token."""
    s = get_identity_settings()
    lim = CaptureLimits()
    clip_data = None if clip is None else await clip.read(lim.max_bytes + 1)
    data: list[bytes] = []
    # Read at most one frame past the limit, and at most one byte past each frame's limit: the
    # service refuses both, and nothing larger is held in memory.
    uploads = frames or []
    for f in uploads[: lim.max_frames + 1]:
        data.append(await f.read(s.max_image_bytes + 1))
    if len(uploads) > lim.max_frames:
        data.extend(b"" for _ in range(len(uploads) - len(data)))
    try:
        return await verify_face(
            session,
            principal=principal,
            challenge_id=challenge_id,
            clip=clip_data,
            frames=data,
            timestamps_ms=timestamps_ms,
            step_windows_ms=step_windows_ms,
        )
    except AttemptRecorded as e:
        return _problem(e.error, request)


@router.post("/agent/attestations", status_code=201, response_model=AttestationOut)
async def agent_attestation(
    body: AttestationIn, agent: Agent, session: SessionDep, request: Request
) -> AttestationOut | JSONResponse:
    """An agent at a liaison station attests the resident's identity in person (L3 without a face)."""
    try:
        attempt = await attestation.attest_in_person(
            session,
            agent=agent,
            resident_phone=body.resident_phone,
            id_number=body.id_number,
            name=body.name,
            document=body.document,
            resident_agreed=body.resident_agreed,
        )
    except AttemptRecorded as e:
        return _problem(e.error, request)
    return AttestationOut(attestation_id=attempt.id, identity_level=3, station_id=attempt.station_id)


@router.post("/step-ups/in-person", status_code=201)
async def in_person_step_up(body: InPersonStepUpIn, principal: CurrentAccount) -> InPersonStepUpOut:
    """Ask for a step-up without a face: show the request to an agent who holds your mandate."""
    request_id = await step_up.open_in_person_request(principal, body.purpose)
    return InPersonStepUpOut(
        request_id=request_id,
        purpose=body.purpose,
        expires_in=step_up.IN_PERSON_REQUEST_TTL_S,
        instructions="请在10分钟内携带身份证到代办点，向已获您授权的代办员出示此核验请求",
    )


@router.post("/agent/step-ups", status_code=201, response_model=AgentStepUpOut)
async def agent_step_up(
    body: AgentStepUpIn, agent: Agent, session: SessionDep, request: Request
) -> AgentStepUpOut | JSONResponse:
    """An agent with the resident's mandate checks them in person for their pending step-up request."""
    try:
        attempt, mandate_id = await attestation.attest_step_up(
            session,
            agent=agent,
            resident_phone=body.resident_phone,
            request_id=body.request_id,
            id_number=body.id_number,
            name=body.name,
            document=body.document,
            resident_agreed=body.resident_agreed,
        )
    except AttemptRecorded as e:
        return _problem(e.error, request)
    return AgentStepUpOut(
        attempt_id=attempt.id,
        purpose=attempt.purpose or "",
        station_id=attempt.station_id,
        mandate_id=mandate_id,
    )


@router.post("/step-ups/in-person/{request_id}/token")
async def in_person_step_up_token(
    request_id: Annotated[str, Path(min_length=16, max_length=64)],
    principal: CurrentAccount,
    session: SessionDep,
) -> StepUpOut:
    """Collect the step-up token once the agent has approved the request (once, valid 5 minutes)."""
    purpose, token = await step_up.claim_in_person_step_up(
        session, account_id=principal.id, request_id=request_id
    )
    return StepUpOut(
        identity_level=principal.identity_level,
        purpose=purpose,
        step_up_token=token,
        expires_in=get_identity_settings().step_up_ttl_s,
    )


@router.get("/me")
async def my_identity(principal: CurrentAccount, session: SessionDep) -> IdentityOverview:
    """The resident's level, identity consents, face-data status and verification history."""
    return await overview.overview(session, account_id=principal.id)


@router.delete("/me/face-data")
async def delete_my_face_data(principal: CurrentAccount, session: SessionDep) -> FaceDataDeletedOut:
    """Delete my face data (template and ID photo) and withdraw the face consent."""
    return await face_data.withdraw_face_consent(session, account_id=principal.id)
