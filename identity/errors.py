"""Errors of the identity package: each has a stable code clients branch on and a Chinese title."""

from __future__ import annotations

from app_api.core.errors import AppError


class ImageInvalid(AppError):
    code = "identity.image_invalid"
    title = "无法识别的图片，请重新拍摄"
    status = 422


class ImageTooLarge(AppError):
    code = "identity.image_too_large"
    title = "图片文件过大"
    status = 413


class ImageTooManyPixels(AppError):
    code = "identity.image_too_many_pixels"
    title = "图片分辨率过高，请降低分辨率后重试"
    status = 413


class NoFace(AppError):
    code = "identity.no_face"
    title = "未检测到人脸，请正对镜头并保持光线充足"
    status = 422


class MultipleFaces(AppError):
    code = "identity.multiple_faces"
    title = "检测到多张人脸，请确保画面中只有您本人"
    status = 422


class FaceMismatch(AppError):
    code = "identity.face_mismatch"
    title = "人脸与身份证照片不一致"
    status = 422


class FramesNotSamePerson(AppError):
    code = "identity.frames_not_same_person"
    title = "视频中出现了不同的人，请本人重新认证"
    status = 422


class LivenessFailed(AppError):
    code = "identity.liveness_failed"
    title = "活体检测未通过，请按提示完成动作"
    status = 422


class TooManyFrames(AppError):
    code = "identity.too_many_frames"
    title = "上传的画面数量过多"
    status = 422


class TooFewFrames(AppError):
    code = "identity.too_few_frames"
    title = "上传的画面数量不足，请按提示完成全部动作"
    status = 422


class FaceEngineBusy(AppError):
    code = "identity.face_engine_busy"
    title = "人脸识别服务繁忙，请稍后再试"
    status = 503


class FaceEngineTimeout(AppError):
    code = "identity.face_engine_timeout"
    title = "人脸识别超时，请稍后再试"
    status = 503


class FaceEngineFailed(AppError):
    code = "identity.face_engine_failed"
    title = "人脸识别服务出错，请稍后再试"
    status = 503


class RealPersonServiceError(AppError):
    code = "identity.real_person_service_error"
    title = "实人认证服务暂时无法响应，请稍后再试"
    status = 502


class ReferencePhotoUnusable(AppError):
    code = "identity.reference_photo_unusable"
    title = "登记照片无法用于比对，请到服务站办理"
    status = 422


class RealPersonNoRecord(AppError):
    code = "identity.real_person_no_record"
    title = "实人认证服务未查到您的身份信息"
    status = 422


class IdNumberInvalid(AppError):
    code = "identity.id_number_invalid"
    title = "身份证号码格式不正确"
    status = 422


class RealNameMismatch(AppError):
    code = "identity.real_name_mismatch"
    title = "姓名与身份证号码不匹配"
    status = 422


class IdNumberTaken(AppError):
    code = "identity.id_number_taken"
    title = "该身份证号码已被其他账号实名认证"
    status = 409


class RealNameAlreadyVerified(AppError):
    code = "identity.real_name_already_verified"
    title = "您已完成实名认证"
    status = 409


class RealNameRateLimited(AppError):
    code = "identity.real_name_rate_limited"
    title = "今日实名认证次数已用完，请明天再试"
    status = 429


class FaceConsentRequired(AppError):
    code = "identity.face_consent_required"
    title = "人脸识别需要您的单独授权同意"
    status = 403


class ChallengeExpired(AppError):
    code = "identity.challenge_expired"
    title = "动作验证已过期，请重新开始"
    status = 410


class ChallengeUsed(AppError):
    code = "identity.challenge_used"
    title = "该动作验证已使用过，请重新开始"
    status = 409


class ChallengeLimit(AppError):
    code = "identity.challenge_limit"
    title = "今日人脸认证发起次数过多，请明天再试"
    status = 429


class FaceLocked(AppError):
    code = "identity.face_locked"
    title = "人脸认证失败次数过多，已暂时锁定，可到服务站由代办员核验"
    status = 429


class StepUpRequired(AppError):
    code = "identity.step_up_required"
    title = "此操作需要再次认证身份（人脸认证，或到代办点由代办员现场核验）"
    status = 403


class StepUpInvalid(AppError):
    code = "identity.step_up_invalid"
    title = "身份认证凭证无效或已使用，请重新认证"
    status = 403


class PurposeInvalid(AppError):
    code = "identity.purpose_invalid"
    title = "不支持的认证用途"
    status = 422


class ResidentNotFound(AppError):
    code = "identity.resident_not_found"
    title = "未找到该居民账号"
    status = 404


class ResidentNotRealName(AppError):
    code = "identity.resident_not_real_name"
    title = "该居民尚未完成实名认证（L2）"
    status = 422


class AttestationMismatch(AppError):
    code = "identity.attestation_mismatch"
    title = "证件信息与该居民的实名信息不一致"
    status = 422


class AgentStationRequired(AppError):
    code = "identity.agent_station_required"
    title = "只有服务站代办员可以现场核验"
    status = 403


class ConsentNotGiven(AppError):
    code = "identity.consent_not_given"
    title = "请先阅读并同意授权说明"
    status = 422


class StepUpRequestExpired(AppError):
    code = "identity.step_up_request_expired"
    title = "现场核验请求已过期或不存在，请在手机上重新发起"
    status = 410


class StepUpRequestMismatch(AppError):
    code = "identity.step_up_request_mismatch"
    title = "该核验请求不属于这位居民"
    status = 403


class StepUpRequestPending(AppError):
    code = "identity.step_up_request_pending"
    title = "代办员尚未完成现场核验，请稍候"
    status = 409


class StepUpRequestUsed(AppError):
    code = "identity.step_up_request_used"
    title = "该现场核验请求已完成，不能重复使用"
    status = 409


class StepUpRequestLimit(AppError):
    code = "identity.step_up_request_limit"
    title = "今日发起现场核验次数过多，请明天再试"
    status = 429


class ResidentNotL3(AppError):
    code = "identity.resident_not_l3"
    title = "该居民尚未完成 L3 实名认证，请先办理现场身份核验"
    status = 422


class VerifierNotCertified(AppError):
    code = "identity.verifier_not_certified"
    title = "本地人脸核验不能用于三级实名认证或敏感业务的身份确认"
    status = 403


class CaptureRequired(AppError):
    """The local verifier judges liveness on one capture only (a clip, or a burst with a timestamp
    per frame): separately uploaded stills can no longer show it (docs/identity.md)."""

    code = "identity.capture_required"
    title = "请使用手机相机连续拍摄，按提示完成动作后上传视频或连拍"
    status = 422
