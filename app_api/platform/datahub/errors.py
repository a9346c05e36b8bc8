"""Errors of the data center gateway and the certificate wallet (problem+json, stable codes)."""

from __future__ import annotations

from app_api.core.errors import AppError, TooManyRequests


class CertificateNotFound(AppError):
    code = "datahub.certificate_not_found"
    title = "未找到该电子证照"
    status = 404


class CertificatePending(AppError):
    code = "datahub.certificate_pending"
    title = "电子证照正在签发中，请稍后再试"
    status = 409


class CertificateRevoked(AppError):
    code = "datahub.certificate_revoked"
    title = "该电子证照已被撤销"
    status = 409


class CertificateExpired(AppError):
    code = "datahub.certificate_expired"
    title = "该电子证照已过有效期"
    status = 409


class UnknownGrantee(AppError):
    code = "datahub.unknown_grantee"
    title = "未找到该共享对象（部门或银行）"
    status = 422


class ShareExpiryInvalid(AppError):
    code = "datahub.share_expiry_invalid"
    title = "共享有效期不正确"
    status = 422


class ShareNotFound(AppError):
    code = "datahub.share_not_found"
    title = "未找到该共享记录"
    status = 404


class ShareExpired(AppError):
    code = "datahub.share_expired"
    title = "该共享已过期"
    status = 410


class ShareRevoked(AppError):
    code = "datahub.share_revoked"
    title = "该共享已被撤回"
    status = 410


class VerifyCodeInvalid(AppError):
    code = "datahub.verify_code_invalid"
    title = "核验码无效"
    status = 404


class VerifyCodeExpired(AppError):
    code = "datahub.verify_code_expired"
    title = "核验码已过期，请持证人刷新后重新出示"
    status = 410


class NotIssuer(AppError):
    code = "datahub.not_issuer"
    title = "只有发证部门可以撤销该电子证照"
    status = 403


class LibraryConflict(AppError):
    """The library already holds this certificate number with other contents (never retried)."""

    code = "datahub.library_conflict"
    title = "电子证照库中已有相同编号的不同证照"
    status = 409


class VerifyRateLimited(TooManyRequests):
    code = "datahub.verify_rate_limited"
    title = "核验过于频繁，请稍后再试"
