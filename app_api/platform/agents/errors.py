from __future__ import annotations

from app_api.core.errors import AppError


class StationNotFound(AppError):
    code = "agents.station_not_found"
    title = "未找到该代办点"
    status = 404


class NotAssigned(AppError):
    code = "agents.not_assigned"
    title = "您尚未分配到代办点，请联系管理员"
    status = 403


class ResidentNotFound(AppError):
    code = "agents.resident_not_found"
    title = "未找到该居民"
    status = 404


class MandateRequired(AppError):
    code = "agents.mandate_required"
    title = "尚未取得居民的代办授权"
    status = 403


class MandateExpired(AppError):
    code = "agents.mandate_expired"
    title = "居民的代办授权已过期，请重新授权"
    status = 403


class MandateWithdrawn(AppError):
    code = "agents.mandate_withdrawn"
    title = "居民已撤回代办授权"
    status = 403


class OutOfScope(AppError):
    code = "agents.out_of_scope"
    title = "该操作不在居民授权的代办范围内"
    status = 403


class MandateNotFound(AppError):
    code = "agents.mandate_not_found"
    title = "未找到该代办授权"
    status = 404


class ConsentCodeInvalid(AppError):
    code = "agents.consent_code_invalid"
    title = "授权验证码错误或已失效"
    status = 400


class ConsentCodeCooldown(AppError):
    code = "agents.consent_code_cooldown"
    title = "授权验证码发送过于频繁，请稍后再试"
    status = 429


class IdentityMismatch(AppError):
    code = "agents.identity_mismatch"
    title = "证件号码与该居民的实名信息不符"
    status = 422


class ResidentIsStaff(AppError):
    code = "agents.resident_is_staff"
    title = "不能为工作人员账号办理代办授权"
    status = 422


class FilingUnavailable(AppError):
    code = "agents.filing_unavailable"
    title = "代办申请服务暂未开通，请稍后再试"
    status = 503


class ClientKeyReused(AppError):
    code = "agents.client_key_reused"
    title = "该提交编号已用于另一项申请"
    status = 409
