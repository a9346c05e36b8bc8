"""Errors of the identity package: each has a stable code clients branch on and a Chinese title."""

from __future__ import annotations

from app_api.errors import AppError


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
